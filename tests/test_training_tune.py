"""Tests for steelfast.training.tune: counts against a pixel-level oracle and the compiled RLE path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steelfast.training.tune import (
    DEFAULT_MIN_AREAS,
    DEFAULT_THRESHOLDS,
    ThresholdStats,
    pair_dice,
    scaled_min_areas,
    tune_on_images,
    tune_postprocess,
)


def _data(seed: int, n: int = 6, h: int = 32, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities correlated with blob-shaped truth, some classes empty, some noise."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((n, 4, h, w), dtype=np.uint8)
    for i in range(n):
        for c in range(4):
            if rng.random() < 0.5:
                r, q = rng.integers(0, h - 8), rng.integers(0, w - 16)
                truth[i, c, r : r + rng.integers(2, 8), q : q + rng.integers(2, 16)] = 1
    probs = np.clip(
        truth * rng.uniform(0.3, 0.9) + rng.normal(0.2, 0.15, truth.shape), 0, 1
    ).astype(np.float32)
    return probs, truth


def _oracle_dice(probs: np.ndarray, truth: np.ndarray, t: float, a: int) -> np.ndarray:
    """(N, C) competition Dice after threshold t and minimum area a, pixel by pixel."""
    pred = probs > np.float32(t)
    area = pred.sum(axis=(2, 3))
    pred = pred & (area >= a)[..., None, None]
    inter = (pred & (truth > 0)).sum(axis=(2, 3))
    denom = pred.sum(axis=(2, 3)) + truth.sum(axis=(2, 3))
    return np.where(denom == 0, 1.0, 2 * inter / np.maximum(denom, 1))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_stats_match_pixel_oracle(seed: int, layout: str) -> None:
    probs, truth = _data(seed)
    p = torch.from_numpy(probs)
    if layout == "channels_last":
        p = p.contiguous(memory_format=torch.channels_last)
    stats = ThresholdStats(DEFAULT_THRESHOLDS)
    stats.update(p[:4], torch.from_numpy(truth[:4]))  # two batches
    stats.update(p[4:], torch.from_numpy(truth[4:]))
    assert len(stats) == 6
    for k, t in enumerate(DEFAULT_THRESHOLDS):
        pred = probs > np.float32(t)
        np.testing.assert_array_equal(stats.pred_area[..., k], pred.sum(axis=(2, 3)))
        np.testing.assert_array_equal(stats.inter[..., k], (pred & (truth > 0)).sum(axis=(2, 3)))
    np.testing.assert_array_equal(stats.truth_area, truth.sum(axis=(2, 3)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tuned_parameters_are_the_grid_optimum(seed: int) -> None:
    probs, truth = _data(seed, n=8)
    areas = (0, 5, 20, 60)
    result = tune_postprocess(probs, truth, min_areas=areas)
    grid = np.array(
        [[_oracle_dice(probs, truth, t, a).mean(axis=0) for a in areas] for t in DEFAULT_THRESHOLDS]
    )
    # grid: (T, A, C) -> best per class
    for c in range(4):
        best = grid[:, :, c].max()
        assert result.class_dice[c] == pytest.approx(best, abs=1e-12)
        ti = DEFAULT_THRESHOLDS.index(result.thresholds[c])
        ai = areas.index(result.min_areas[c])
        assert grid[ti, ai, c] == pytest.approx(best, abs=1e-12)
    assert result.score == pytest.approx(np.mean(result.class_dice))
    assert result.default_score == pytest.approx(_oracle_dice(probs, truth, 0.5, 0).mean())
    assert result.score >= result.default_score
    assert result.grid.shape == (4, len(DEFAULT_THRESHOLDS), len(areas))


@pytest.mark.parametrize("seed", [0, 5])
def test_tuned_score_equals_compiled_rle_score(seed: int) -> None:
    from steelfast.metrics import dice_rle
    from steelfast.rle import encode, encode_probs

    probs, truth = _data(seed, n=8)
    result = tune_postprocess(probs, truth, min_areas=(0, 10, 40))
    rles = encode_probs(probs, result.thresholds, result.min_areas)
    scores = [
        dice_rle(rles[i][c], encode(truth[i, c]), shape=truth.shape[2:])
        for i in range(len(truth))
        for c in range(4)
    ]
    assert np.mean(scores) == pytest.approx(result.score, abs=1e-12)


def test_min_area_removes_small_false_positives() -> None:
    truth = np.zeros((4, 4, 32, 64), dtype=np.uint8)
    probs = np.zeros((4, 4, 32, 64), dtype=np.float32)
    truth[0, 0, 5:15, 5:25] = 1  # one real 200-px defect
    probs[0, 0, 5:15, 5:25] = 0.9
    probs[1:, 0, 0:3, 0:3] = 0.9  # 9-px speckles on the defect-free images
    result = tune_postprocess(probs, truth, min_areas=(0, 10, 300))
    assert result.min_areas[0] == 10
    assert result.class_dice[0] == pytest.approx(1.0)
    assert result.default_score < result.score


def test_ties_choose_first_grid_point() -> None:
    truth = np.zeros((2, 4, 32, 32), dtype=np.uint8)
    probs = np.zeros((2, 4, 32, 32), dtype=np.float32)
    result = tune_postprocess(probs, truth, min_areas=(0, 100))
    assert result.thresholds == [DEFAULT_THRESHOLDS[0]] * 4
    assert result.min_areas == [0] * 4
    assert result.score == 1.0


def test_pair_dice_conventions() -> None:
    got = pair_dice(
        np.array([0, 0, 10, 10, 5]), np.array([0, 0, 10, 0, 5]), np.array([0, 10, 10, 0, 5]), 6
    )
    np.testing.assert_allclose(got, [1.0, 0.0, 1.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((256, 1600), DEFAULT_MIN_AREAS),
        ((256, 800), (0, 100, 300, 500, 1000)),
        ((32, 64), (0, 1, 3, 5, 10)),
    ],
)
def test_scaled_min_areas(shape: tuple[int, int], expected: tuple[int, ...]) -> None:
    assert scaled_min_areas(shape) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"thresholds": (0.5, 0.4)}, "increasing sequence in"),
        ({"thresholds": (0.5, 1.2)}, r"in \[0, 1\)"),
        ({"min_areas": (0, -5)}, r"ints >= 0, got \[0, -5\]"),
        ({"min_areas": (0.5,)}, "ints >= 0"),
    ],
)
def test_bad_grids(kwargs: dict, message: str) -> None:
    probs, truth = _data(0, n=2)
    with pytest.raises(ValueError, match=message):
        tune_postprocess(probs, truth, **kwargs)


def test_bad_calls() -> None:
    probs, truth = _data(0, n=2)
    with pytest.raises(ValueError, match="exactly one"):
        tune_postprocess(probs, truth, stats=ThresholdStats())
    with pytest.raises(ValueError, match="exactly one"):
        tune_postprocess()
    with pytest.raises(ValueError, match="empty validation set"):
        tune_postprocess(stats=ThresholdStats())
    with pytest.raises(ValueError, match=r"got \(2, 4, 32, 64\) and \(2, 4, 32, 32\)"):
        ThresholdStats().update(probs, truth[..., :32])
    with pytest.raises(TypeError, match="floating point"):
        ThresholdStats().update(truth, truth)
    with pytest.raises(ValueError, match="shape must be positive"):
        scaled_min_areas((0, 10))


class _OracleSegmenter:
    """Stands in for a Segmenter: returns fixed probabilities per image id, in batches of 3."""

    batch_size = 3

    def __init__(self, probs_by_image: dict, order: list) -> None:
        self.probs_by_image = probs_by_image
        self.order = iter(order)

    def predict_proba(self, grays):
        ids = [next(self.order) for _ in grays]
        return [(list(range(len(grays))), np.stack([self.probs_by_image[i] for i in ids]))]


def test_tune_on_images_equals_tuning_the_same_probabilities(tmp_path) -> None:
    import cv2
    import pandas as pd

    from steelfast.rle import encode

    probs, truth = _data(5, n=7)
    ids = [f"im{i}.png" for i in range(len(probs))]
    rows = []
    for i, image_id in enumerate(ids):
        cv2.imwrite(str(tmp_path / image_id), np.zeros(truth.shape[2:], np.uint8))
        rows += [(image_id, c + 1, encode(truth[i, c])) for c in range(4) if truth[i, c].any()]
    labels = pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"])
    seg = _OracleSegmenter(dict(zip(ids, probs)), ids)
    got = tune_on_images(seg, tmp_path, labels, ids, min_areas=(0, 5, 20))
    want = tune_postprocess(probs, truth, min_areas=(0, 5, 20))
    assert got.thresholds == want.thresholds and got.min_areas == want.min_areas
    assert got.score == pytest.approx(want.score, abs=1e-12)


def test_tune_on_images_bad_input(tmp_path) -> None:
    import cv2
    import pandas as pd

    labels = pd.DataFrame(columns=["ImageId", "ClassId", "EncodedPixels"])
    with pytest.raises(ValueError, match="image_ids is empty"):
        tune_on_images(_OracleSegmenter({}, []), tmp_path, labels, [])
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 64), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((32, 96), np.uint8))
    probs = {"a.png": np.zeros((4, 32, 64), np.float32), "b.png": np.zeros((4, 32, 96), np.float32)}

    class _TwoSizes(_OracleSegmenter):
        def predict_proba(self, grays):
            ids = [next(self.order) for _ in grays]
            return [([k], self.probs_by_image[i][None]) for k, i in enumerate(ids)]

    with pytest.raises(ValueError, match="images of one size: b.png is 32x96, not 32x64"):
        tune_on_images(_TwoSizes(probs, ["a.png", "b.png"]), tmp_path, labels, ["a.png", "b.png"])
