"""steelfast.metrics against the NumPy oracle: Dice semantics, batches, RLE Dice, the Kaggle score."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import random_mask
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from oracles import dice_reference, mask2rle

from steelfast import metrics, rle

pairs = st.integers(1, 30).flatmap(
    lambda h: st.integers(1, 30).flatmap(
        lambda w: st.tuples(
            hnp.arrays(np.uint8, (h, w), elements=st.integers(0, 1)),
            hnp.arrays(np.uint8, (h, w), elements=st.integers(0, 1)),
        )
    )
)


@settings(max_examples=200, deadline=None)
@given(pairs)
def test_dice_matches_oracle_on_masks_and_runs(pair):
    a, b = pair
    expected = dice_reference(a, b)
    assert metrics.dice(a, b) == pytest.approx(expected, abs=1e-12)
    assert metrics.dice_rle(mask2rle(a), mask2rle(b), a.shape) == pytest.approx(expected, abs=1e-12)


def test_dice_semantics():
    empty = np.zeros((4, 4), np.uint8)
    full = np.ones((4, 4), np.uint8)
    assert metrics.dice(empty, empty) == 1.0
    assert metrics.dice(empty, full) == 0.0
    assert metrics.dice(full, full) == 1.0
    assert metrics.dice_rle("", None, (4, 4)) == 1.0
    assert metrics.dice_rle("1 16", "", (4, 4)) == 0.0
    assert metrics.dice_rle("1 8", "5 8", (4, 4)) == pytest.approx(0.5)


@pytest.mark.parametrize("dtypes", [(np.uint8, np.uint8), (np.bool_, np.uint8), (np.int32, np.int32), (np.int64, np.bool_)])
@pytest.mark.parametrize("threads", [None, 1, 3])
def test_dice_batch_matches_loop(rng, dtypes, threads):
    pred = np.stack([random_mask(rng, (40, 70), c) for c in (0, 0, 0.1, 0.3, 0.02, 0.5, 0.2, 0)]).reshape(2, 4, 40, 70)
    truth = np.stack([random_mask(rng, (40, 70), c) for c in (0, 0.1, 0.1, 0.3, 0, 0.5, 0.25, 0)]).reshape(2, 4, 40, 70)
    pred, truth = (pred * 3).astype(dtypes[0]), truth.astype(dtypes[1])
    expected = np.array([[dice_reference(p, t) for p, t in zip(ps, ts)] for ps, ts in zip(pred, truth)])
    got = metrics.dice_batch(pred, truth, threads=threads)
    assert got.shape == (2, 4) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(metrics.dice_batch(pred[:, 1:3], truth[:, 1:3]), expected[:, 1:3])  # non-contiguous


def test_dice_batch_large_masks_exercise_the_lane_counters(rng):
    pred = random_mask(rng, (256, 1600), 0.4)[None, None]
    truth = random_mask(rng, (256, 1600), 0.3)[None, None]
    assert metrics.dice_batch(pred, truth)[0, 0] == pytest.approx(dice_reference(pred, truth), abs=1e-12)


def test_dice_rle_batch(rng):
    masks = [random_mask(rng, (20, 30), c) for c in (0, 0.1, 0.3)]
    texts = [mask2rle(m) for m in masks]
    got = metrics.dice_rle_batch(texts, texts[::-1], (20, 30))
    np.testing.assert_allclose(got, [dice_reference(a, b) for a, b in zip(masks, masks[::-1])])


def test_kaggle_score_formats_and_missing_pairs(tmp_path):
    shape = (4, 5)
    truth = pd.DataFrame({"ImageId": ["a.jpg", "b.jpg"], "ClassId": [1, 3], "EncodedPixels": ["1 4", "3 2"]})
    # old format, four rows per image, including a defect-free image "c.jpg"
    rows = []
    for image in ("a.jpg", "b.jpg", "c.jpg"):
        for class_id in range(1, 5):
            text = {"a.jpg_1": "1 2", "b.jpg_3": "3 2", "c.jpg_2": "1 1"}.get(f"{image}_{class_id}", "")
            rows.append((f"{image}_{class_id}", text))
    old = pd.DataFrame(rows, columns=["ImageId_ClassId", "EncodedPixels"])
    path = tmp_path / "sub.csv"
    old.to_csv(path, index=False)
    # pairs: 12; a_1 = 2*2/(2+4) = 2/3, c_2 = 0, the other 10 = 1
    expected = (10 + 2 / 3) / 12
    assert metrics.kaggle_score(path, truth, shape=shape) == pytest.approx(expected)
    assert metrics.kaggle_score(old, truth, shape=shape) == pytest.approx(expected)
    # an all-empty submission scored on an explicit image list
    empty = pd.DataFrame({"ImageId": [], "ClassId": [], "EncodedPixels": []})
    images = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert metrics.kaggle_score(empty, truth, images=images, shape=shape) == pytest.approx(14 / 16)
    report = metrics.kaggle_score_report(path, truth, shape=shape)
    assert report.loc["all", "dice"] == pytest.approx(expected)
    assert report.loc[1, "dice_defects"] == pytest.approx(2 / 3)
    assert report.loc[2, "truth_defects"] == 0 and report.loc[2, "pred_defects"] == 1
    assert list(report.index) == [1, 2, 3, 4, "all"]


def test_kaggle_score_rejects_images_outside_the_list():
    truth = pd.DataFrame({"ImageId": ["a.jpg"], "ClassId": [1], "EncodedPixels": ["1 1"]})
    with pytest.raises(ValueError, match=r"not in `images`, e.g. \['a.jpg'\]"):
        metrics.kaggle_score(truth, truth, images=["b.jpg"], shape=(4, 5))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: metrics.dice(np.zeros((2, 2)), np.zeros((2, 2))), TypeError, "bool or integer"),
        (lambda: metrics.dice(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8)), ValueError, "same shape"),
        (lambda: metrics.dice_batch(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8)), ValueError, "3-D or 4-D"),
        (lambda: metrics.dice_rle("1 2 3", "", (4, 5)), ValueError, "odd number of tokens"),
        (lambda: metrics.dice_rle_batch(["1 1"], [], (4, 5)), ValueError, "same length"),
        (lambda: metrics.dice_rle_batch(["1 1", "x"], ["", ""], (4, 5)), ValueError, r"^a\[1\]: token 0 'x'"),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: metrics.dice_rle("1 x", "1 1", (4, 4)), rle.RLEError, r"^a: token 1 'x' is not a non-negative"),
        (lambda: metrics.dice_rle("1 1", "1 x", (4, 4)), rle.RLEError, r"^b: token 1 'x' is not a non-negative"),
        (lambda: metrics.dice_rle("1 1", "3 5", (2, 2)), rle.RLEError, r"^b: run 0 .* runs past the mask's 4"),
        (lambda: metrics.dice_rle("5 1", "9 1", (2, 2)), rle.RLEError, r"^a: run 0"),
        (lambda: metrics.dice_rle("1 1", "\ud800", (4, 4)), ValueError, r"^b is not valid Unicode"),
        (lambda: metrics.dice_rle(3, "", (4, 4)), TypeError, r"^a must be a str"),
        (lambda: metrics.dice_rle("1 1", "", (2**40, 2**40)), ValueError, r"shape .* more than RLE numbers reach"),
        (lambda: metrics.dice_rle_batch(["1 1", "1 1"], ["1 1", "3 x"], (4, 4)), rle.RLEError,
         r"^b\[1\]: token 1 'x'"),
        (lambda: metrics.dice_rle_batch(["1 1", "1 1"], ["1 1", "\udc80"], (4, 4)), ValueError, r"^b\[1\] is not valid"),
        (lambda: metrics.dice_rle_batch("1 1", "1 1", (4, 4)), TypeError, "a must be a sequence of RLE strings"),
        (lambda: metrics.dice_rle_batch(["1 1"], ["1 1"], (4, 4), threads=2**31), ValueError, "threads must be"),
        (lambda: metrics.dice_batch(np.zeros((0, 4, 4), np.uint8), np.zeros((0, 4, 4), np.uint8), threads=0), ValueError,
         "threads must be .*got 0"),  # checked even when there is nothing to do
    ],
)
def test_rle_errors_name_the_argument(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    assert "incompatible function arguments" not in str(info.value)


def test_real_labels_score_themselves_perfectly_and_empty_scores_the_defect_free_share(real_data):
    truth = real_data / "train_partial.csv"
    images = pd.read_csv(real_data / "train_partial_images.csv").iloc[:, 0].astype(str).tolist()
    assert metrics.kaggle_score(truth, truth, images=images) == 1.0
    frame = pd.read_csv(truth)
    empty = pd.DataFrame({"ImageId": [], "ClassId": [], "EncodedPixels": []})
    expected = 1 - len(frame) / (4 * len(images))
    assert metrics.kaggle_score(empty, truth, images=images) == pytest.approx(expected)


def test_expected_score_by_hand() -> None:
    # Two images, two classes. Class 1: one defect pair (Dice 0.5), one clean pair (1.0).
    # Class 2: one defect pair (Dice 0.0), one clean pair with a false mask (0.0).
    truth_has = np.array([[True, False], [False, True]])
    dice = np.array([[0.5, 0.0], [1.0, 0.0]])
    est = metrics.expected_score(truth_has, dice, (0.2, 0.5))
    assert est["per_class"] == pytest.approx({"1": 0.2 * 0.5 + 0.8 * 1.0, "2": 0.0})
    assert est["score"] == pytest.approx((0.9 + 0.0) / 2) and est["all_empty"] == pytest.approx((0.8 + 0.5) / 2)
    assert est["missing"] == [] and est["prevalence"] == [0.2, 0.5]
    assert metrics.expected_score(truth_has, dice, "0.2,0.5") == est


def test_expected_score_without_a_class_is_not_estimable() -> None:
    est = metrics.expected_score(np.array([[True, False], [False, False]]), np.ones((2, 2)), (0.5, 0.5))
    assert est["score"] is None and est["missing"] == [2] and list(est["per_class"]) == ["1"]


def test_expected_score_defaults_to_the_kaggle_rates() -> None:
    from steelfast.severstal import PREVALENCE

    est = metrics.expected_score(np.eye(4, dtype=bool), np.ones((4, 4)))
    assert est["prevalence"] == pytest.approx(list(PREVALENCE)) and est["score"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("truth_has", "dice", "prevalence", "error", "match"),
    [
        (np.zeros((2, 4), bool), np.zeros((2, 3)), None, ValueError, r"equal \(N, C\) arrays, got \(2, 4\) and \(2, 3\)"),
        (np.zeros(4, bool), np.zeros(4), None, ValueError, r"equal \(N, C\) arrays, got \(4,\) and \(4,\)"),
        (np.zeros((2, 2), bool), np.zeros((2, 2)), (0.5, 1.5), ValueError, "strictly between 0 and 1"),
        (np.zeros((2, 2), bool), np.zeros((2, 2)), "a,b", ValueError, "prevalence must be 2 comma-separated numbers"),
        (np.zeros((2, 2), bool), np.zeros((2, 2)), 0.5, TypeError, "prevalence"),
    ],
)
def test_expected_score_input_errors(truth_has, dice, prevalence, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        metrics.expected_score(truth_has, dice, prevalence)
