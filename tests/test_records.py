"""Defect records (steelfast.inference.records): components from the core against OpenCV, and the facade."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from oracles import components_reference, mask2rle, rle2mask

from steelfast import rle
from steelfast.inference.records import Defect, ImageRecord, encode_records


def blobs(rng: np.random.Generator, shape: tuple[int, int], coverage: float, blur: int) -> np.ndarray:
    """Probabilities in [0, 1) whose masks at 0.5 cover about ``coverage``: blurred noise gives blobs, none gives
    speckle (many one-pixel and diagonal-only components)."""
    noise = rng.random(shape).astype(np.float32)
    if blur:
        noise = cv2.GaussianBlur(noise, (2 * blur + 1, 2 * blur + 1), blur)
        noise = (noise - noise.min()) / max(float(noise.max() - noise.min()), 1e-6)
    cut = np.quantile(noise, 1.0 - coverage) if coverage > 0 else 2.0
    return np.clip(0.5 + (noise - cut), 0.0, 0.999).astype(np.float32)


def check_plane(record_rle: str, defects: list[Defect], probs: np.ndarray, threshold: float, min_area: int) -> None:
    mask = probs > np.float32(threshold) if probs.dtype == np.float32 else probs.astype(np.float64) > threshold
    if mask.sum() == 0 or mask.sum() < min_area:
        assert record_rle == "" and defects == []
        return
    assert record_rle == mask2rle(mask)
    expected = components_reference(mask, probs)
    assert [d.bbox for d in defects] == [e["bbox"] for e in expected]
    assert [d.area for d in defects] == [e["area"] for e in expected]
    for d, e in zip(defects, expected):
        assert d.score_mean == pytest.approx(e["mean"], rel=1e-6)
        assert d.score_max == pytest.approx(e["max"], rel=1e-6)
        np.testing.assert_array_equal(rle2mask(d.rle, mask.shape), e["mask"])


SHAPES = [(1, 1), (1, 17), (13, 1), (2, 2), (7, 5), (16, 24), (64, 128), (256, 96)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("coverage", "blur"), [(0.0, 0), (0.05, 0), (0.3, 0), (0.6, 0), (0.2, 3), (0.97, 2), (1.0, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_components_match_opencv(shape: tuple[int, int], coverage: float, blur: int, dtype: type) -> None:
    rng = np.random.default_rng([shape[0], shape[1], int(coverage * 100), blur])
    probs = np.stack([np.stack([blobs(rng, shape, coverage, blur) for _ in range(3)]) for _ in range(2)]).astype(dtype)
    thresholds = [0.5, 0.5, 0.7]
    records = encode_records(probs, thresholds, 0, threads=2)
    assert [r.image_id for r in records] == ["0", "1"]
    assert [list(r.rles) for r in records] == rle.encode_probs(probs, thresholds, 0)
    for image, record in zip(probs, records):
        assert (record.height, record.width) == shape
        for c in range(3):
            check_plane(record.rles[c], [d for d in record.defects if d.class_id == c + 1], image[c], thresholds[c], 0)
            assert record.presence[c] == pytest.approx(max(0.0, float(np.nanmax(image[c].astype(np.float64)))))


@pytest.mark.parametrize(
    "picture",
    [
        # columns that touch only at a corner: one defect (8-connectivity)
        ["#..", ".#.", "..#"],
        # a run that wraps from the bottom of column 0 to the top of column 1 without touching: two defects
        [".#", "..", "#."],
        # a U shape whose arms meet only in the last column: one defect, labelled by its first column
        ["#####", "....#", "#####"],
        # nested: a ring around a separate dot
        ["#####", "#...#", "#.#.#", "#...#", "#####"],
        # combs that merge late
        ["#.#.#.#", "#.#.#.#", "#######"],
    ],
)
def test_hand_drawn_components(picture: list[str]) -> None:
    mask = np.array([[ch == "#" for ch in row] for row in picture])
    probs = np.where(mask, 0.75, 0.25).astype(np.float32)[None, None]
    record = encode_records(probs, 0.5)[0]
    check_plane(record.rles[0], list(record.defects), probs[0, 0], 0.5, 0)
    assert len(record.defects) == cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def test_channels_last_and_strided_views_match_contiguous(rng: np.random.Generator) -> None:
    probs = np.stack([blobs(rng, (40, 60), 0.2, 2) for _ in range(8)]).reshape(2, 4, 40, 60)
    last = np.ascontiguousarray(probs.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    cropped = np.pad(probs, ((0, 0), (0, 0), (0, 8), (0, 4)))[:, :, :40, :60]
    assert encode_records(last) == encode_records(probs) == encode_records(cropped)


def test_min_area_applies_to_the_class_mask_not_to_each_defect() -> None:
    mask = np.zeros((20, 20), bool)
    mask[2:4, 2:4] = True  # 4 pixels
    mask[10:16, 10:16] = True  # 36 pixels
    probs = np.where(mask, 0.9, 0.1).astype(np.float32)[None, None]
    kept = encode_records(probs, 0.5, 40)[0]
    assert [d.area for d in kept.defects] == [4, 36]  # 40 in all: the mask stays, with its small defect
    dropped = encode_records(probs, 0.5, 41)[0]
    assert dropped.rles == ("",) and dropped.defects == ()
    assert dropped.presence == pytest.approx((0.9,))  # the presence score does not depend on the area filter


def test_nan_and_negative_probabilities_are_no_defect_and_no_presence() -> None:
    probs = np.array([[[[np.nan, -1.0, 0.25], [0.75, np.nan, -0.0]]]], np.float32)
    record = encode_records(probs, 0.5)[0]
    assert record.presence == (0.75,)
    assert [(d.bbox, d.area) for d in record.defects] == [((0, 1, 1, 1), 1)]


def test_to_json_names_every_field() -> None:
    probs = np.zeros((1, 4, 8, 8), np.float32)
    probs[0, 2, 1:3, 4:7] = 0.8
    record = encode_records(probs, 0.5, image_ids=["a.jpg"])[0]
    assert record.to_json() == {
        "image_id": "a.jpg", "height": 8, "width": 8,
        "presence": {"1": 0.0, "2": 0.0, "3": pytest.approx(0.8), "4": 0.0},
        "defects": [{"class_id": 3, "bbox": [4, 1, 3, 2], "area": 6, "score_mean": pytest.approx(0.8),
                     "score_max": pytest.approx(0.8), "rle": record.defects[0].rle}],
        "note": None,
    }
    assert isinstance(record, ImageRecord) and rle.area(record.defects[0].rle, (8, 8)) == 6


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"probs": np.zeros((1, 4, 8, 8), np.float64)}, TypeError, "float32 or float16"),
        ({"probs": np.zeros((4, 8, 8), np.float32)}, ValueError, r"\(N, C, H, W\)"),
        ({"thresholds": 1.5}, ValueError, "thresholds must lie in"),
        ({"thresholds": [0.5, 0.5]}, ValueError, r"one value per class \(4\)"),
        ({"min_areas": -1}, ValueError, "min_areas must be non-negative"),
        ({"threads": 0}, ValueError, "threads"),
        ({"image_ids": ["a", "b"]}, ValueError, "got 2 image_ids for 1 images"),
    ],
)
def test_bad_input_is_refused(kwargs: dict, error: type, match: str) -> None:
    args = {"probs": np.zeros((1, 4, 8, 8), np.float32), **kwargs}
    with pytest.raises(error, match=match):
        encode_records(**args)
