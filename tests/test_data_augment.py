"""steelfast.data.augment: steel augmentations keep masks aligned and stay in range."""

from __future__ import annotations

import numpy as np
import pytest

from steelfast.data.augment import SteelAugment


@pytest.mark.parametrize("seed", range(6))
def test_flips_move_masks_with_the_image(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gray = np.zeros((64, 160), np.uint8)
    gray[5:15, 20:50] = 200  # a bright defect
    masks = np.zeros((4, 64, 160), np.uint8)
    masks[2, 5:15, 20:50] = 1
    aug = SteelAugment(flip=0.5, photometric=0, blur=0, jpeg=0, edge_band=0)
    out, m = aug(gray, masks, rng)
    assert out.dtype == np.uint8 and out.shape == gray.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out > 100, m[2] > 0)


@pytest.mark.parametrize("seed", range(4))
def test_photometric_blur_jpeg_band_keep_shape_and_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gray = np.random.default_rng(99).integers(60, 200, (64, 800), dtype=np.uint8)
    masks = np.random.default_rng(7).integers(0, 2, (4, 64, 800), dtype=np.uint8)
    aug = SteelAugment(flip=0, photometric=1, blur=1, jpeg=1, edge_band=1)
    out, m = aug(gray, masks, rng)
    assert out.shape == gray.shape and out.dtype == np.uint8
    assert not np.array_equal(out, gray)
    np.testing.assert_array_equal(m, masks)


def test_edge_band_darkens_one_side() -> None:
    gray = np.full((32, 800), 180, np.uint8)
    aug = SteelAugment(flip=0, photometric=0, blur=0, jpeg=0, edge_band=1)
    out, none = aug(gray, None, np.random.default_rng(3))
    assert none is None
    left, right = out[:, :30].mean(), out[:, -30:].mean()
    assert min(left, right) < 90 < max(left, right)


def test_no_augmentation_is_identity() -> None:
    gray = np.arange(64 * 160, dtype=np.uint8).reshape(64, 160)
    out, _ = SteelAugment(flip=0, photometric=0, blur=0, jpeg=0, edge_band=0)(gray, None, np.random.default_rng(0))
    np.testing.assert_array_equal(out, gray)


@pytest.mark.parametrize(("field", "value", "exc"), [("flip", 1.5, ValueError), ("jpeg", -0.1, ValueError),
                                                     ("blur", "x", TypeError), ("edge_band", True, TypeError)])
def test_bad_probabilities(field: str, value: object, exc: type) -> None:
    with pytest.raises(exc, match=field):
        SteelAugment(**{field: value})
