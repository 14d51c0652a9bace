"""Dice speed: the compiled batch kernel against a NumPy count_nonzero loop, and Dice on runs against decoding."""

from __future__ import annotations

import numpy as np
import pytest
from bench_rle import synthetic_set
from harness import mask2rle, rle2mask, speedup

from steelfast import metrics


def numpy_dice_loop(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    out = np.empty(pred.shape[:2])
    for i in range(pred.shape[0]):
        for c in range(pred.shape[1]):
            x, y = pred[i, c], truth[i, c]
            total = np.count_nonzero(x) + np.count_nonzero(y)
            out[i, c] = 1.0 if total == 0 else 2.0 * np.count_nonzero(x & y) / total
    return out


@pytest.fixture(scope="module")
def pairs() -> tuple[np.ndarray, np.ndarray]:
    truth = synthetic_set(32, seed=1).reshape(8, 4, 256, 1600)
    pred = truth.copy()
    pred[:, :, :, ::7] = 0  # a prediction that overlaps most of the truth
    pred[:, 1, 100:120] = 1
    return pred, truth


def test_dice_batch_reference_numpy(timed, pairs):
    pred, truth = pairs
    timed("dice_batch", "numpy", lambda: numpy_dice_loop(pred, truth))


def test_dice_batch_steelfast(timed, pairs):
    pred, truth = pairs
    got = timed("dice_batch", "steelfast", lambda: metrics.dice_batch(pred, truth))
    np.testing.assert_allclose(got, numpy_dice_loop(pred, truth), rtol=0, atol=1e-12)


def test_dice_batch_goals():
    assert speedup("dice_batch", "steelfast", "numpy") >= 2


@pytest.fixture(scope="module")
def text_pairs(pairs) -> tuple[list[str], list[str]]:
    pred, truth = pairs
    return [mask2rle(m) for m in pred.reshape(-1, 256, 1600)], [mask2rle(m) for m in truth.reshape(-1, 256, 1600)]


def _decode_and_compare(a: list[str], b: list[str]) -> list[float]:
    out = []
    for x, y in zip(a, b):
        mx, my = rle2mask(x), rle2mask(y)
        total = np.count_nonzero(mx) + np.count_nonzero(my)
        out.append(1.0 if total == 0 else 2.0 * np.count_nonzero(mx & my) / total)
    return out


def test_dice_rle_reference_decode(timed, text_pairs):
    timed("dice_rle", "decode+numpy", lambda: _decode_and_compare(*text_pairs))


def test_dice_rle_steelfast(timed, text_pairs):
    a, b = text_pairs
    got = timed("dice_rle", "steelfast", lambda: [metrics.dice_rle(x, y) for x, y in zip(a, b)])
    np.testing.assert_allclose(got, _decode_and_compare(a, b), rtol=0, atol=1e-12)


def test_dice_rle_goals():
    assert speedup("dice_rle", "steelfast", "decode+numpy") >= 20
