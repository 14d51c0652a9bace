"""Sørensen–Dice and the Kaggle Severstal score, computed by the compiled core.

Dice of two binary masks X, Y is ``2|X ∩ Y| / (|X| + |Y|)`` and 1.0 when both are empty. The competition score is
the mean Dice over every (ImageId, ClassId) pair of the test set, defect-free pairs included.
"""

from __future__ import annotations

from collections.abc import Iterable
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd

from steelfast._compiled import core
from steelfast._validate import as_mask_array, as_rle_text, as_rle_texts, as_shape, as_threads
from steelfast.labels import read_labels
from steelfast.rle import RLEError, failed_item
from steelfast.severstal import CLASSES, SHAPE

__all__ = ["dice", "dice_batch", "dice_rle", "dice_rle_batch", "expected_score", "kaggle_score", "kaggle_score_report"]


def _same_bytes(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}")
    if pred.itemsize != truth.itemsize:  # the kernel reads both with one element size
        pred, truth = pred != 0, truth != 0
    return np.ascontiguousarray(pred), np.ascontiguousarray(truth)


def dice(pred: Any, truth: Any) -> float:
    """Dice of two (H, W) masks of any bool or integer dtype (nonzero = defect); 1.0 when both are empty."""
    a, b = _same_bytes(as_mask_array(pred, "pred", (2,)), as_mask_array(truth, "truth", (2,)))
    return float(core.dice_many(a, b, 1, 1)[0])


def dice_batch(pred: Any, truth: Any, threads: int | None = None) -> np.ndarray:
    """Dice of each mask pair over the last two axes.

    Args:
        pred: (N, C, H, W) (or (N, H, W)) bool or integer masks.
        truth: the same shape.
        threads: worker threads (None = one per CPU).

    Returns:
        float64 array of the leading shape, (N, C) for 4-D input.
    """
    a, b = _same_bytes(as_mask_array(pred, "pred", (3, 4)), as_mask_array(truth, "truth", (3, 4)))
    lead = a.shape[:-2]
    pairs, n_threads = int(np.prod(lead)), as_threads(threads)  # threads checked even when there is nothing to do
    if pairs == 0:
        return np.zeros(lead, dtype=np.float64)
    return core.dice_many(a, b, pairs, n_threads).reshape(lead)


def _name_bad_text(error: RLEError, named: dict[str, list[str]], total: int, batch: bool) -> RLEError:
    # The core's message names the token but not which argument held it: re-check each side to name the first bad
    # text, "a" or "b" (or "a[i]" for a batch).
    for name, texts in named.items():
        try:
            core.areas_many(texts, total, 1)
        except RLEError as exc:
            item = failed_item(exc)
            if item is None:
                return RLEError(f"{name}: {exc}")
            return RLEError(f"{name}[{item[0]}]: {item[1]}" if batch else f"{name}: {item[1]}")
    return error


def dice_rle(a: str | None, b: str | None, shape: tuple[int, int] = SHAPE) -> float:
    """Dice of two RLE texts computed on their runs, without decoding; 1.0 when both are empty.

    Raises:
        RLEError: malformed text; the message starts with the argument, ``a`` or ``b``, then names the token.
    """
    height, width = as_shape(shape)
    text_a, text_b = as_rle_text(a, "a"), as_rle_text(b, "b")
    try:
        return float(core.dice_rle(text_a, text_b, height * width))
    except RLEError as exc:
        raise _name_bad_text(exc, {"a": [text_a], "b": [text_b]}, height * width, batch=False) from None


def dice_rle_batch(
    a: Iterable[str | None], b: Iterable[str | None], shape: tuple[int, int] = SHAPE, threads: int | None = None
) -> np.ndarray:
    """:func:`dice_rle` elementwise over two equally long sequences: float64 array (N,)."""
    height, width = as_shape(shape)
    texts_a, texts_b = as_rle_texts(a, "a"), as_rle_texts(b, "b")
    if len(texts_a) != len(texts_b):
        raise ValueError(f"a and b must have the same length, got {len(texts_a)} and {len(texts_b)}")
    try:
        scores = core.dice_rle_many(texts_a, texts_b, height * width, as_threads(threads))
    except RLEError as exc:
        raise _name_bad_text(exc, {"a": texts_a, "b": texts_b}, height * width, batch=True) from None
    return np.asarray(scores, dtype=np.float64)


def _pair_table(
    submission: pd.DataFrame | str | PathLike, truth: pd.DataFrame | str | PathLike, images: Iterable[str] | None,
    shape: tuple[int, int],
) -> pd.DataFrame:
    sub = read_labels(submission, shape=shape)
    ref = read_labels(truth, shape=shape)
    seen = set(sub["ImageId"]) | set(ref["ImageId"])
    if images is not None:
        image_set = {str(i) for i in images}
        extra = sorted(seen - image_set)
        if extra:
            raise ValueError(
                f"{len(extra)} image(s) in the label files are not in `images`, e.g. {extra[:3]}"
            )
    else:
        image_set = seen
    grid = pd.MultiIndex.from_product([sorted(image_set), list(CLASSES)], names=["ImageId", "ClassId"])
    table = pd.DataFrame(index=grid)
    table["pred"] = sub.set_index(["ImageId", "ClassId"])["EncodedPixels"].reindex(grid, fill_value="")
    table["truth"] = ref.set_index(["ImageId", "ClassId"])["EncodedPixels"].reindex(grid, fill_value="")
    table["dice"] = dice_rle_batch(table["pred"].tolist(), table["truth"].tolist(), shape)
    return table.reset_index()


def kaggle_score(
    submission: pd.DataFrame | str | PathLike,
    truth: pd.DataFrame | str | PathLike,
    images: Iterable[str] | None = None,
    shape: tuple[int, int] = SHAPE,
) -> float:
    """Mean Dice over all (ImageId, ClassId) pairs, as the competition scored it.

    Args:
        submission: DataFrame or CSV path in either Kaggle label format (old ``ImageId_ClassId,EncodedPixels`` or
            new ``ImageId,ClassId,EncodedPixels``).
        truth: the same for the ground truth.
        images: the full image set when the files alone don't name it (the new format omits defect-free images).
        shape: (H, W) of the masks.

    Returns:
        The score in [0, 1]. A pair missing from a file counts as empty.
    """
    table = _pair_table(submission, truth, images, shape)
    return float(table["dice"].mean()) if len(table) else 1.0


def kaggle_score_report(
    submission: pd.DataFrame | str | PathLike,
    truth: pd.DataFrame | str | PathLike,
    images: Iterable[str] | None = None,
    shape: tuple[int, int] = SHAPE,
) -> pd.DataFrame:
    """Per-class breakdown of :func:`kaggle_score`.

    Returns:
        DataFrame indexed by ClassId (1..4 and "all") with columns ``pairs``, ``truth_defects``, ``pred_defects``,
        ``dice`` (mean over all pairs of the class) and ``dice_defects`` (mean over pairs whose truth has a defect,
        NaN if none).
    """
    table = _pair_table(submission, truth, images, shape)
    table["truth_has"] = table["truth"] != ""
    table["pred_has"] = table["pred"] != ""

    def summarize(group: pd.DataFrame) -> pd.Series:
        defects = group.loc[group["truth_has"], "dice"]
        return pd.Series(
            {
                "pairs": len(group),
                "truth_defects": int(group["truth_has"].sum()),
                "pred_defects": int(group["pred_has"].sum()),
                "dice": float(group["dice"].mean()) if len(group) else float("nan"),
                "dice_defects": float(defects.mean()) if len(defects) else float("nan"),
            }
        )

    rows = {class_id: summarize(group) for class_id, group in table.groupby("ClassId")}
    rows["all"] = summarize(table)
    report = pd.DataFrame(rows).T
    report.index.name = "ClassId"
    return report.astype({"pairs": int, "truth_defects": int, "pred_defects": int})


def expected_score(truth_has: Any, dice: Any, prevalence: Any = None) -> dict[str, Any]:
    """The Kaggle score the same predictions would get on images with other class rates.

    A labelled sample is rarely as rich in defects as the folder a model will run on. For each
    class c with prevalence π (the share of images holding it), the expected score of a pair is
    π · (mean Dice over the sample's pairs with a class-c defect) + (1 − π) · (mean Dice over its
    pairs without one): the sample's positives and negatives re-weighted to the target rates.

    Args:
        truth_has: bool (N, C): the pair's truth has a defect.
        dice: float (N, C): Dice of each pair (1 when both masks are empty).
        prevalence: C shares in (0, 1), or comma-separated text; None: the Kaggle train set's
            :data:`steelfast.severstal.PREVALENCE`.

    Returns:
        ``{"per_class": {"1": score, ...}, "score", "all_empty", "prevalence", "missing"}``: a
        class without both positive and negative pairs in the sample cannot be estimated; it is
        listed in ``missing`` and then ``score`` is None.

    Raises:
        ValueError: Arrays of different or non-2-D shapes, or a bad ``prevalence`` (quoted).
        TypeError: A ``prevalence`` that is not numbers.
    """
    from steelfast._validate import check_prevalence

    t, d = np.asarray(truth_has, bool), np.asarray(dice, float)
    if t.ndim != 2 or t.shape != d.shape:
        raise ValueError(f"truth_has and dice must be equal (N, C) arrays, got {t.shape} and {d.shape}")
    shares = check_prevalence(prevalence, t.shape[1])
    per_class = {}
    for c, pi in enumerate(shares):
        pos, neg = t[:, c], ~t[:, c]
        if pos.any() and neg.any():
            per_class[str(c + 1)] = float(pi * d[pos, c].mean() + (1 - pi) * d[neg, c].mean())
    missing = [c + 1 for c in range(len(shares)) if str(c + 1) not in per_class]
    return {"per_class": per_class, "score": None if missing else float(np.mean(list(per_class.values()))),
            "all_empty": float(np.mean([1 - p for p in shares])), "prevalence": list(shares), "missing": missing}
