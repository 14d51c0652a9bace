"""bench/weak_masks.py: weak images turned fully labelled by their teacher's masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import bench_script, small_labelled_set


@pytest.fixture
def script():
    return bench_script("weak_masks")


def _maps(values: dict[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """Teacher maps of the 4 weak images of small_labelled_set(): (weak k, class c) -> (pixels, value)."""
    seg = np.zeros((4, 4, 256, 1600), np.uint8)
    for (k, c), (pixels, value) in values.items():
        seg[k, c].reshape(-1)[:pixels] = value
    return seg


@pytest.mark.parametrize(("values", "converted"), [
    # weak images 8..11 hold class 1, nothing, class 3, class 4 (small_labelled_set's rule)
    ({(0, 0): (2000, 200), (0, 1): (5000, 255)}, [8]),  # class 2 is absent: its map is dropped
    ({(0, 0): (999, 200)}, []),  # under --min-area
    ({(0, 0): (2000, 127)}, []),  # p = 127/255 is not above 0.5
    ({(0, 0): (2000, 128), (2, 2): (1000, 255), (3, 3): (4000, 255)}, [8, 10, 11]),
    ({(1, 0): (9000, 255)}, []),  # an image with no class present has nothing to mask
])
def test_weak_images_with_a_mask_for_every_present_class_become_full(script, values: dict, converted: list) -> None:
    train = small_labelled_set()
    seg = _maps(values)
    out, n = script.with_teacher_masks(train, seg, 0.5, 1000)
    assert n == len(converted)
    assert list(np.flatnonzero(out.full)) == list(np.flatnonzero(train.full)) + converted
    for k, i in enumerate(np.flatnonzero(~train.full)):
        if i in converted:
            want = (seg[k] > 127).astype(np.uint8) * train.presence[i][:, None, None]
            assert np.array_equal(out.masks[i], want) and out.masks[i].any()
        else:
            assert out.masks[i] is None
    for i in np.flatnonzero(train.full):  # the real masks are untouched
        assert out.masks[i] is train.masks[i]
    assert out.ids == train.ids and np.array_equal(out.presence, train.presence)


def test_one_map_per_weak_image(script) -> None:
    with pytest.raises(ValueError, match="3 teacher maps for 4 weak images"):
        script.with_teacher_masks(small_labelled_set(), np.zeros((3, 4, 256, 1600), np.uint8), 0.5, 1000)


@pytest.mark.parametrize(("args", "match"), [
    (["--threshold", "1.5"], r"--threshold must be in \[0, 1\) and --min-area >= 1, got 1.5, 1000"),
    (["--min-area", "0"], r"--min-area >= 1, got 0.5, 0"),
    ([], r"model_0\.safetensors is missing: run real_cv.py's fold step there first"),
])
def test_refusals_before_any_data_is_read(script, tmp_path: Path, args: list, match: str) -> None:
    with pytest.raises(SystemExit, match=match):
        script.main(["--fold", "0", "--out", str(tmp_path / "out"), "--teacher", str(tmp_path), *args])
