"""Choosing the gate and post-processing per class from out-of-fold predictions.

Flow: out-of-fold probabilities (segmentation maps and gate scores) + labels → per class a gate
threshold, a pixel threshold and a minimum area → :class:`GateChoice`; and
:func:`apply_choice`: probabilities + choice → per (image, class) predicted-nonempty flags and
Dice against the truth.

The objective is the expected Kaggle score on **real** folders, not on the sample at hand. For
class c with real prevalence π (:data:`steelfast.severstal.PREVALENCE`), relative to predicting
nothing, a setting gains

    gain = π · E[Dice · predicted | class present] − (1 − π) · P(predicted | class absent)

Both expectations are estimated on the labelled images, each class's positives and negatives
averaged separately, so a defect-rich sample is re-weighted to the real rates. For weakly labelled
images (presence known, masks not), a predicted positive is credited with the mean Dice of the
fully labelled positives predicted at the same setting.

The chosen setting must still gain after three more false positives than observed (``slack``):
with no false positive among n negatives, 3/n is the "rule of three" 95 % upper bound of the
false-positive rate. Otherwise the class is switched off, so small samples default to predicting
nothing, which scores exactly the all-empty score. (On the shared 53-image cross-validation a
slack of 1 let class 4 through with false positives on held-out folds; 2 and 3 agree.) So even a
setting without any false positive switches a class on only where the recall times the mean Dice
of its predicted positives exceeds ``(1 − π) · slack / (π · n_neg)`` (:func:`break_even`): a bar
that only more labelled negatives lower.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from steelfast.severstal import PREVALENCE

__all__ = ["CLASS_OFF", "SLACK", "GateChoice", "apply_choice", "break_even", "effective_threshold", "pixel_areas",
           "tune_gate"]

#: Gate threshold that switches a class off (gate probabilities never exceed 1).
CLASS_OFF = 2.0
PIXEL_THRESHOLDS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_AREAS: tuple[int, ...] = (0, 400, 1000, 2000, 4000, 8000)
#: False positives a chosen setting must survive beyond those observed (the rule of three).
SLACK = 3


@dataclass
class GateChoice:
    """Per-class settings: gate threshold (:data:`CLASS_OFF` = never), pixel threshold, min area.

    Attributes:
        gate: Gate probability thresholds.
        thresholds: Pixel probability thresholds.
        min_areas: Minimum mask areas in pixels (at 256×1600).
        gain: Estimated gain over all-empty per class, in Kaggle-score units per (image, class).
        details: Per-class counts behind the choice (positives, negatives, TP/FP at the choice).
    """

    gate: list[float]
    thresholds: list[float]
    min_areas: list[int]
    gain: list[float]
    details: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"gate": self.gate, "thresholds": self.thresholds, "min_areas": self.min_areas,
                "gain": self.gain, "details": self.details}


def break_even(prevalence: float, negatives: int, slack: int = SLACK) -> float:
    """The recall × mean Dice a class's predicted positives must exceed before :func:`tune_gate`
    switches it on, even with no false positive: ``(1 − π) · slack / (π · n_neg)``.

    Args:
        prevalence: The class's share of images where the model will run (π, in (0, 1)).
        negatives: Tuning images without the class (n_neg).
        slack: The extra false positives of the rule.

    Returns:
        The bar; above 1 the class can never be switched on; ``inf`` without negatives.
    """
    return (1 - prevalence) * slack / (prevalence * negatives) if negatives > 0 else float("inf")


def effective_threshold(t: float) -> float:
    """The threshold ``encode_probs`` must use to match the uint8 test ``q > floor(255 t)``.

    With ``q = round(255 p)``, ``q > floor(255 t)`` holds exactly when ``p >= (floor(255 t) + 0.5) / 255``;
    the value returned sits just below that, so that ``p > value`` agrees.
    """
    return float(np.nextafter((np.floor(t * 255) + 0.5) / 255, 0.0))


def pixel_areas(
    seg_c: np.ndarray, truth_c: Sequence[np.ndarray | None], t: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted area, intersection and truth area per image for one class at pixel threshold t.

    ``seg_c`` is uint8 (N, H, W) probabilities × 255, thresholded as the tuning does (``p > t`` as
    ``q > floor(255 t)``); a None truth (a weakly labelled image) counts as no intersection and
    no truth area.
    """
    cut = int(np.floor(t * 255))  # p > t  ⇔  round(255 p) > floor(255 t), up to rounding
    n = len(seg_c)
    area, inter, tarea = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        above = seg_c[i] > cut
        area[i] = np.count_nonzero(above)
        if truth_c[i] is not None:
            tarea[i] = np.count_nonzero(truth_c[i])
            if tarea[i] and area[i]:
                inter[i] = np.count_nonzero(above & (truth_c[i] > 0))
    return area, inter, tarea


def tune_gate(
    seg: np.ndarray,
    gate: np.ndarray,
    masks: Sequence[np.ndarray | None],
    presence: np.ndarray,
    *,
    prevalence: Sequence[float] = PREVALENCE,
    thresholds: Sequence[float] = PIXEL_THRESHOLDS,
    min_areas: Sequence[int] = MIN_AREAS,
    slack: int = SLACK,
) -> GateChoice:
    """Choose per-class gate threshold, pixel threshold and minimum area (module docstring).

    Args:
        seg: uint8 (N, C, H, W) segmentation probabilities × 255 (out-of-fold).
        gate: float (N, C) gate probabilities (out-of-fold).
        masks: Per image, uint8 (C, H, W) truth masks, or None for a weakly labelled image.
        presence: bool (N, C) class presence (from the masks or the weak labels).
        prevalence: Real share of images holding each class.
        thresholds: Pixel threshold grid.
        min_areas: Minimum-area grid (pixels).
        slack: Extra false positives the chosen setting must survive.

    Returns:
        A :class:`GateChoice`.

    Raises:
        ValueError: Inconsistent shapes.
    """
    n, classes = gate.shape
    if seg.shape[:2] != (n, classes) or presence.shape != (n, classes) or len(masks) != n:
        raise ValueError(f"shapes disagree: seg {seg.shape}, gate {gate.shape}, presence {presence.shape}, "
                         f"{len(masks)} masks")
    if len(prevalence) != classes:
        raise ValueError(f"prevalence needs {classes} values, got {list(prevalence)!r}")
    full = np.array([m is not None for m in masks])
    choice = GateChoice([CLASS_OFF] * classes, [0.5] * classes, [0] * classes, [0.0] * classes)
    for c in range(classes):
        pi = float(prevalence[c])
        pos, neg = presence[:, c], ~presence[:, c]
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        best = (0.0, None)
        if n_pos == 0 or n_neg == 0:
            choice.details.append({"positives": n_pos, "negatives": n_neg, "note": "no positives or negatives"})
            continue
        truth_c = [m[c] if m is not None else None for m in masks]
        order = np.argsort(-gate[:, c], kind="stable")
        g_sorted = gate[order, c]
        for t in thresholds:
            area, inter, tarea = pixel_areas(seg[:, c], truth_c, t)
            for a in min_areas:
                nonempty = area >= max(a, 1)
                dice = np.where(nonempty & (tarea > 0), 2 * inter / np.maximum(area + tarea, 1), 0.0)
                known = (full & pos & nonempty)[order]
                weak_on = (~full & pos & nonempty)[order]
                fp = (neg & nonempty)[order].astype(float)
                # Gate at each distinct score: predicted = nonempty and gate >= g (g = sorted score).
                # Weak positives are credited with the mean Dice of the fully labelled positives
                # predicted at the same setting, gate included (the same prefix of the order).
                cum_known = np.cumsum(known)
                cum_dice = np.cumsum(np.where(known, dice[order], 0.0))
                mean_dice = cum_dice / np.maximum(cum_known, 1)
                cum_credit = cum_dice + mean_dice * np.cumsum(weak_on)
                cum_fp = np.cumsum(fp)
                last = np.r_[g_sorted[1:] != g_sorted[:-1], True]  # end of each group of equal scores
                gains = pi * cum_credit / n_pos - (1 - pi) * (cum_fp + slack) / n_neg
                gains[~last] = -np.inf
                k = int(np.argmax(gains))
                if gains[k] > best[0]:
                    # Halfway to the next lower score: rounding of the gate (bf16, fp16) cannot
                    # move an image across the threshold the way it could at the score itself.
                    g = float(g_sorted[k] + g_sorted[k + 1]) / 2 if k + 1 < n else 0.0
                    best = (float(gains[k]), (g, effective_threshold(t), a, int(cum_fp[k]),
                                              int((known | weak_on)[: k + 1].sum()), float(mean_dice[k])))
        detail = {"positives": n_pos, "negatives": n_neg, "prevalence": pi, "break_even": break_even(pi, n_neg, slack)}
        if best[1] is not None:
            g, t, a, fps, tps, md = best[1]
            choice.gate[c], choice.thresholds[c], choice.min_areas[c] = g, t, a
            choice.gain[c] = best[0] + (1 - pi) * slack / n_neg  # report the gain without the slack
            detail.update({"true_positives": tps, "false_positives": fps, "mean_dice_predicted": md})
        choice.details.append(detail)
    return choice


def apply_choice(
    seg: np.ndarray, gate: np.ndarray, masks: Sequence[np.ndarray | None], choice: GateChoice
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a choice to probabilities and score it against the truth.

    Args:
        seg: uint8 (N, C, H, W) probabilities × 255.
        gate: float (N, C) gate probabilities.
        masks: Truth masks per image (None for weak images: their Dice is NaN).
        choice: The settings.

    Returns:
        ``(predicted, dice)``: bool (N, C) non-empty predicted masks, float (N, C) Dice per pair
        (1 when both are empty; NaN for weak images).
    """
    n, classes = gate.shape
    predicted = np.zeros((n, classes), bool)
    dice = np.full((n, classes), np.nan)
    full = np.array([m is not None for m in masks])
    for c in range(classes):
        area, inter, tarea = pixel_areas(seg[:, c], [m[c] if m is not None else None for m in masks], choice.thresholds[c])
        on = (gate[:, c] >= choice.gate[c]) & (area >= max(choice.min_areas[c], 1))
        predicted[:, c] = on
        scored = np.where(on, 2 * inter / np.maximum(area + tarea, 1), (tarea == 0).astype(float))
        dice[full, c] = scored[full]
    return predicted, dice
