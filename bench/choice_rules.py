"""Other rules for the out-of-fold gate choice, scored by the same nested cross-validation.

The shipped rule (:func:`steelfast.training.gate_tuning.tune_gate`) picks, per class, the gate
threshold, pixel threshold and minimum area whose *empirical* gain over all-empty (re-weighted to the
Kaggle class rates) is largest after three extra false positives. On about 42 scored images per fold
it keeps classes 1, 2 and 4 off. This script tests a rule that reads the gate as a probability
instead of counting hits: ``bayes``

1. per class, a logistic calibration ``P(class present | gate score) = sigmoid(a · logit(g) + b)``
   is fitted on the tuning images (fully and weakly labelled; a small ridge keeps it finite when the
   scores separate the classes), then shifted from the tuning images' class rate to the real one;
2. for each pixel threshold and minimum area of the grid, ``d`` is the mean Dice of the fully
   labelled positives that get a mask; an image gets its mask when ``P · d > 1 − P`` (a mask gains
   ``d`` on a defect and costs 1 on a clean pair), i.e. ``P > 1 / (1 + d)``;
3. the grid point with the largest expected gain under the calibrated model (images re-weighted to
   the real class rates) is kept; a class whose best expected gain is not positive stays off.

::

    python bench/choice_rules.py --out runs/cv/cpu5 [--rule shipped|bayes] [--ridge 1.0]

It prints the same report as ``real_cv.py report`` for the chosen rule.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import numpy as np


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def calibrate(z: np.ndarray, y: np.ndarray, ridge: float) -> tuple[float, float]:
    """Ridge logistic regression of ``y`` on ``z`` (Newton steps): slope and intercept."""
    x = np.stack([z, np.ones_like(z)], 1)
    w = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + ridge * np.r_[w[0], 0.0]
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag([ridge, 1e-6])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[0]), float(w[1])


def tune_bayes(seg, gate, masks, presence, *, prevalence, ridge: float = 1.0):
    """A :class:`GateChoice` by the calibrated decision rule (module docstring)."""
    from steelfast.training.gate_tuning import (
        CLASS_OFF,
        MIN_AREAS,
        PIXEL_THRESHOLDS,
        GateChoice,
        effective_threshold,
        pixel_areas,
    )

    n, classes = gate.shape
    full = np.array([m is not None for m in masks])
    choice = GateChoice([CLASS_OFF] * classes, [0.5] * classes, [0] * classes, [0.0] * classes)
    for c in range(classes):
        y = presence[:, c].astype(float)
        r, pi = y.mean(), float(prevalence[c])
        if r in (0.0, 1.0):
            choice.details.append({"note": "no positives or negatives"})
            continue
        z = _logit(gate[:, c])
        mu, sd = z.mean(), z.std() or 1.0
        a, b = calibrate((z - mu) / sd, y, ridge)
        shift = np.log(pi / (1 - pi)) - np.log(r / (1 - r))
        p = 1 / (1 + np.exp(-(a * (z - mu) / sd + b + shift)))
        weight = np.where(y > 0, pi / r, (1 - pi) / (1 - r)) / n  # the sample re-weighted to real rates
        truth_c = [m[c] if m is not None else None for m in masks]
        best = (0.0, None)
        for t in PIXEL_THRESHOLDS:
            area, inter, tarea = pixel_areas(seg[:, c], truth_c, t)
            for amin in MIN_AREAS:
                nonempty = area >= max(amin, 1)
                hits = full & (y > 0) & nonempty
                if not hits.any():
                    continue
                d = float(np.mean(2 * inter[hits] / np.maximum(area[hits] + tarea[hits], 1)))
                on = nonempty & (p * d > 1 - p)
                gain = float(np.sum(weight * on * (p * d - (1 - p))))
                if on.any() and gain > best[0]:
                    # the gate threshold on the raw score equivalent to P > 1 / (1 + d)
                    target = -np.log(d)  # logit(1 / (1 + d))
                    zt = ((target - b - shift) / a) * sd + mu if a > 0 else np.inf
                    g = float(1 / (1 + np.exp(-zt))) if np.isfinite(zt) else CLASS_OFF
                    best = (gain, (g, effective_threshold(t), amin, d, float(a), float(b)))
        if best[1] is not None:
            g, t, amin, d, a_, b_ = best[1]
            choice.gate[c], choice.thresholds[c], choice.min_areas[c], choice.gain[c] = g, t, amin, best[0]
            choice.details.append({"mean_dice": d, "slope": a_, "intercept": b_})
        else:
            choice.details.append({"note": "no positive expected gain"})
    return choice


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="a real_cv.py run folder")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--rule", choices=["shipped", "bayes"], default="bayes")
    ap.add_argument("--ridge", type=float, default=1.0, help="rule 'bayes': ridge on the calibration slope")
    args = ap.parse_args(argv)
    from real_cv import load_run

    from steelfast.data.real import load_shared
    from steelfast.severstal import PREVALENCE
    from steelfast.training.crossval import cross_validate
    from steelfast.training.fit import cv_text
    from steelfast.training.gate_tuning import tune_gate

    data = load_shared()
    oof = load_run(args.out, args.folds, data)[0]
    rule = tune_gate if args.rule == "shipped" else partial(tune_bayes, ridge=args.ridge)
    cv = cross_validate(data, oof, prevalence=PREVALENCE, tune=rule)
    print(f"run: {args.out}; rule: {args.rule}" + (f" (ridge {args.ridge})" if args.rule == "bayes" else ""))
    print(cv_text(data, cv), end="")
    for f, ch in enumerate(cv.choices):
        print(f"fold {f + 1}: gate " + " / ".join(f"{g:.3f}" for g in ch.gate)
              + "; min areas " + " / ".join(str(a) for a in ch.min_areas))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
