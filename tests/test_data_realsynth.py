"""The synthetic generator from real parts (steelfast.data.realsynth)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steelfast.data.real import LabelledSet
from steelfast.data.realsynth import RealParts, load_shape_bank, synthesize
from steelfast.rle import encode

H, W = 256, 1600


def _rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def _parts(level: int = 120, classes: tuple[int, ...] = (1, 3)) -> RealParts:
    rng = np.random.default_rng(0)
    images = np.clip(rng.normal(level, 8, size=(2, H, W)), 0, 255).astype(np.uint8)
    masks = np.zeros((2, 4, H, W), np.uint8)
    for c in classes:  # a textured real "defect" of each class in image 0
        masks[0, c - 1] = _rect(20 + 30 * c, 60 + 30 * c, 100 * c, 100 * c + 80)
        images[0][masks[0, c - 1].astype(bool)] = 30
    shapes = {c: [encode(_rect(100, 140, 600 + 50 * c, 700 + 50 * c))] for c in classes}
    return RealParts(images, masks, {c: shapes.get(c, []) for c in (1, 2, 3, 4)})


def _flips(parts: RealParts, image: np.ndarray) -> tuple[int, np.ndarray]:
    """Which parts sheet (and which flip of it) ``image`` is."""
    for j, src in enumerate(parts.images):
        for flip in (src, src[:, ::-1], src[::-1], src[::-1, ::-1]):
            if np.array_equal(flip, image):
                return j, flip
    raise AssertionError("not a flipped parts image")


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_without_pastes_every_image_is_a_flipped_real_sheet_with_its_masks(seed: int) -> None:
    parts = _parts()
    out = synthesize(parts, 6, seed=seed, paste_prob=0.0)
    assert out.images.shape == (6, H, W) and out.full.all() and len(set(out.ids)) == 6
    for image, masks, present in zip(out.images, out.masks, out.presence):
        j, _ = _flips(parts, image)
        assert masks.sum() == parts.masks[j].sum()
        np.testing.assert_array_equal(present, parts.masks[j].reshape(4, -1).any(axis=1))


@pytest.mark.parametrize("seed", [0, 3])
def test_pastes_label_real_shapes_and_change_only_their_box(seed: int) -> None:
    parts = _parts()
    out = synthesize(parts, 8, seed=seed, paste_prob=1.0)
    boxes = {c: _rect(100, 140, 600 + 50 * c, 700 + 50 * c) for c in (1, 3)}
    pasted = 0
    for image, masks in zip(out.images, out.masks):
        assert masks.max() <= 1 and masks.sum(axis=0).max() <= 1  # one class per pixel
        for c, box in boxes.items():
            mirrored = box[:, ::-1]
            for shape in (box, mirrored):
                on = shape.astype(bool)
                if masks[c - 1][on].all():
                    pasted += 1
    assert pasted >= 8  # every image got at least one pasted shape, labelled as its class
    # Determinism: the same seed gives the same set, another seed another one.
    again = synthesize(parts, 8, seed=seed, paste_prob=1.0)
    np.testing.assert_array_equal(again.images, out.images)
    other = synthesize(parts, 8, seed=seed + 100, paste_prob=1.0)
    assert not np.array_equal(other.images, out.images)


def test_shapes_off_the_sheet_are_not_pasted() -> None:
    parts = _parts(level=5)  # a "sheet" as dark as the background beside real sheets
    parts.masks[:] = 0
    parts.masks[0, 0, :2, :2] = 1  # one tiny example so that class 1 is pasteable
    parts.images[0, :2, :2] = 5
    out = synthesize(parts, 4, seed=0, paste_prob=1.0)
    assert sum(int(m.sum()) for m in out.masks) <= 4 * 4  # only the example pixels, never a shape


def test_shape_bank_excludes_scored_images_and_empty_rows() -> None:
    frame = pd.DataFrame({"ImageId": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], "ClassId": ["1", "3", "3", "4"],
                          "EncodedPixels": ["1 5", "10 2", "20 3", ""]})
    bank = load_shape_bank(frame, exclude=["b.jpg"])
    assert bank == {1: ["1 5"], 2: [], 3: ["20 3"], 4: []}


def test_from_set_uses_full_images_only() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, size=(3, H, W), dtype=np.uint8)
    m = np.zeros((4, H, W), np.uint8)
    m[2, :10, :10] = 1
    data = LabelledSet(["x.jpg", "y.jpg", "z.jpg"], images, np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0] * 4], bool),
                       np.array([True, False, True]), [m, None, np.zeros_like(m)])
    parts = RealParts.from_set(data, {3: ["1 5"]})
    assert len(parts.images) == 2 and parts.pasteable() == [3]
    np.testing.assert_array_equal(parts.images[1], images[2])


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"n": 0}, ValueError, "n must be a positive int, got 0"),
    ({"n": 2.5}, TypeError, "n must be a positive int"),
    ({"n": 2, "paste_prob": 1.5}, ValueError, r"paste_prob must be in \[0.0, 1.0\], got 1.5"),
])
def test_synthesize_bad_arguments(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        synthesize(_parts(), **kwargs)


def test_nothing_to_paste() -> None:
    parts = _parts()
    parts.shapes = {c: [] for c in (1, 2, 3, 4)}
    with pytest.raises(ValueError, match="no class has both a real shape and a real example"):
        synthesize(parts, 2, paste_prob=0.5)
    assert len(synthesize(parts, 2, paste_prob=0.0)) == 2


def test_shape_bank_needs_its_columns() -> None:
    with pytest.raises(ValueError, match=r"missing \['EncodedPixels'\]"):
        load_shape_bank(pd.DataFrame({"ImageId": ["a"], "ClassId": ["1"]}))


def test_from_set_needs_a_full_image() -> None:
    data = LabelledSet(["x.jpg"], np.zeros((1, H, W), np.uint8), np.array([[1, 0, 0, 0]], bool),
                       np.array([False]), [None])
    with pytest.raises(ValueError, match="at least one fully labelled real image"):
        RealParts.from_set(data, {})


def test_defect_free_sheets_make_every_defect_a_pasted_one() -> None:
    rng = np.random.default_rng(2)
    images = np.clip(rng.normal(120, 8, size=(3, H, W)), 0, 255).astype(np.uint8)
    m = np.zeros((4, H, W), np.uint8)
    m[2, 10:50, 100:180] = 1
    data = LabelledSet(["d.jpg", "e.jpg", "f.jpg"], images, np.array([[0, 0, 1, 0], [0] * 4, [0] * 4], bool),
                       np.ones(3, bool), [m, np.zeros_like(m), np.zeros_like(m)])
    shape = _rect(100, 140, 700, 800)
    parts = RealParts.from_set(data, {3: [encode(shape)]}, sheets="defect-free")
    assert parts.sheets.tolist() == [1, 2] and len(parts.images) == 3  # image 0 stays a texture example
    out = synthesize(parts, 6, seed=0, paste_prob=1.0)
    box, mirror = shape.astype(bool), shape[:, ::-1].astype(bool)
    for masks in out.masks:
        on = masks[2].astype(bool)
        assert masks[[0, 1, 3]].sum() == 0  # no real defect came with a sheet
        assert not (on & ~(box | mirror)).any()  # only pasted shapes carry the label
        assert (on & box).sum() == box.sum() or (on & mirror).sum() == mirror.sum()


@pytest.mark.parametrize(("sheets", "match"), [("some", "sheets must be one of 'all', 'defect-free', got 'some'")])
def test_bad_sheets(sheets: str, match: str) -> None:
    data = LabelledSet(["x.jpg"], np.zeros((1, H, W), np.uint8), np.zeros((1, 4), bool), np.array([True]),
                       [np.zeros((4, H, W), np.uint8)])
    with pytest.raises(ValueError, match=match):
        RealParts.from_set(data, {}, sheets=sheets)


def test_defect_free_sheets_need_a_clean_image() -> None:
    m = np.zeros((4, H, W), np.uint8)
    m[0, :4, :4] = 1
    data = LabelledSet(["x.jpg"], np.zeros((1, H, W), np.uint8), np.array([[1, 0, 0, 0]], bool), np.array([True]), [m])
    with pytest.raises(ValueError, match="no fully labelled image is defect-free"):
        RealParts.from_set(data, {1: ["1 4"]}, sheets="defect-free")
