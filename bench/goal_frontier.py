"""How far one gate and post-processing setting could take a cross-validation run: the in-sample frontier.

Issue 12 asks the default pipeline for two things at once on the 53 fully labelled real images: a
Kaggle score 0.03 above all-empty, and a mean Dice of 0.35 over the (image, class) pairs that hold
a defect. The gate trades one against the other: switching a class on earns Dice on its defect
pairs and costs false masks on its clean ones.

This script takes the out-of-fold predictions of a ``real_cv.py`` run and, per class, tries every
gate threshold (each distinct out-of-fold gate score, and off), pixel threshold and minimum area
of the tuning grid (``steelfast.training.gate_tuning``), choosing them **on the scored images
themselves**, one setting per class for all images. That is an oracle, not a cross-validation:
the frontier it draws is the best any single setting per class could do on these predictions,
which an honest tuning (settings chosen on other images) cannot expect to reach. (The
cross-validation scores each fold with its own setting, so by luck a CV figure can sit above it.)
Where both goals lie beyond it, no choice of one gate and threshold per class meets them; only
better predictions (a better segmenter or gate, more training data) can.

    python bench/goal_frontier.py --out runs/cv/NAME [--real-rates] [--plot frontier.png]

Prints the frontier (score against defect-pair Dice), its best score, its best Dice, the best
Dice at a score of all-empty + 0.03, the ungated segmenter's Dice on the defect pairs, and what the
shipped gate rule asks of a class before it switches it on (:func:`break_even`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

GOAL_MARGIN, GOAL_DICE = 0.03, 0.35


def break_even(presence: np.ndarray, fold: np.ndarray, prevalence) -> np.ndarray:
    """``steelfast.training.gate_tuning.break_even`` on each fold's tuning images (all images
    outside the fold, full and weak): float (folds, classes), the recall × mean Dice a class's
    predicted positives must exceed before the shipped rule switches it on."""
    from steelfast.training.gate_tuning import break_even as bar

    folds = int(fold.max()) + 1
    return np.array([[bar(pi, int((~presence[fold != f, c]).sum())) for c, pi in enumerate(prevalence)]
                     for f in range(folds)])


def class_options(seg_c, gate_c, truth_c, thresholds, min_areas, weight_defect, weight_clean):
    """One class's settings as Pareto-reduced ``(score term, sum of Dice over defect pairs, setting)``.

    ``seg_c`` uint8 (N, H, W), ``gate_c`` (N,), ``truth_c`` uint8 (N, H, W): the scored images only.
    The score term weighs each defect pair's Dice by ``weight_defect`` and each clean pair's by
    ``weight_clean``. A setting is ``"off"`` or (gate threshold, pixel threshold, minimum area).
    """
    from steelfast.training.gate_tuning import pixel_areas

    has = np.array([t.any() for t in truth_c])
    options = [(weight_clean * float((~has).sum()), 0.0, "off")]  # 1 per clean pair, 0 per defect pair
    cuts = np.unique(gate_c)
    for t in thresholds:
        area, inter, tarea = pixel_areas(seg_c, truth_c, t)  # the tuning's own uint8 test
        dice = 2 * inter / np.maximum(area + tarea, 1)
        for a in min_areas:
            nonempty = area >= max(a, 1)
            for g in cuts:
                on = nonempty & (gate_c >= g)
                defect_sum = float(np.where(on, dice, 0.0)[has].sum())
                clean_sum = float((~on[~has]).sum())
                options.append((weight_defect * defect_sum + weight_clean * clean_sum, defect_sum, (float(g), t, a)))
    return pareto(options)


def pareto(points):
    """The points not beaten on both of their first two values."""
    points = sorted(points, key=lambda p: (-p[0], -p[1]))
    kept, best = [], -np.inf
    for p in points:
        if p[1] > best:
            kept.append(p)
            best = p[1]
    return kept


def frontier(per_class):
    """Combine the classes' Pareto sets: sums over classes, with each class's setting."""
    combined = [(0.0, 0.0, ())]
    for options in per_class:
        combined = pareto([(s + o[0], d + o[1], how + (o[2],)) for s, d, how in combined for o in options])
    return combined


def run_frontier(oof, data, real_rates: bool):
    """The frontier of a merged run over its fully labelled images: ``(points, all-empty, defect pairs)``.

    Points are ``(score, defect-pair Dice, per-class settings)``, best score first. The score is the
    mean Dice over the scored pairs, or with ``real_rates`` the score expected at the real class
    prevalences (each class's defect and clean pairs averaged separately, as the gate tuning does).
    """
    from steelfast.severstal import PREVALENCE
    from steelfast.training.gate_tuning import MIN_AREAS, PIXEL_THRESHOLDS

    full = np.flatnonzero(data.full)
    masks = [data.masks[i] for i in full]
    classes = oof.gate.shape[1]
    has = np.array([[m[c].any() for c in range(classes)] for m in masks])
    defect = int(has.sum())
    per_class, all_empty = [], 0.0
    for c in range(classes):
        n_defect, n_clean = int(has[:, c].sum()), int((~has[:, c]).sum())
        if real_rates:
            if not n_defect or not n_clean:
                raise SystemExit(f"class {c + 1} has {n_defect} defect and {n_clean} clean pairs: no real-rate score")
            w_defect, w_clean = PREVALENCE[c] / (classes * n_defect), (1 - PREVALENCE[c]) / (classes * n_clean)
        else:
            w_defect = w_clean = 1 / has.size
        all_empty += w_clean * n_clean
        per_class.append(class_options(oof.seg[full, c], oof.gate[full, c], [m[c] for m in masks],
                                       PIXEL_THRESHOLDS, MIN_AREAS, w_defect, w_clean))
    return [(s, d / defect, how) for s, d, how in frontier(per_class)], all_empty, defect


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="a real_cv.py run folder (oof_F.npz)")
    ap.add_argument("--folds", type=int, default=5, help="number of folds of the run")
    ap.add_argument("--plot", type=Path, default=None, help="write the frontier as a PNG here")
    ap.add_argument("--real-rates", action="store_true",
                    help="score at the Kaggle train set's class prevalences (what the default gate tuning "
                    "maximises) instead of the scored images' own")
    args = ap.parse_args(argv)

    from real_cv import load_run  # bench/ is the script's folder, first on sys.path

    from steelfast.data.real import load_shared
    from steelfast.metrics import dice

    data = load_shared()
    oof, _, _ = load_run(args.out, args.folds, data)
    front, all_empty, defect = run_frontier(oof, data, args.real_rates)
    target = all_empty + GOAL_MARGIN
    full = np.flatnonzero(data.full)
    per_class = [[dice(oof.seg[i, c] > 127, data.masks[i][c]) for i in full if data.masks[i][c].any()]
                 for c in range(oof.gate.shape[1])]  # p > 0.5 in the uint8 maps
    ungated = [d for ds in per_class for d in ds]

    rates = "at the real class rates" if args.real_rates else "over the scored pairs"
    print(f"{args.out}: {len(full)} scored images, {defect} defect pairs; score {rates}; all-empty {all_empty:.4f}")
    print(f"ungated segmenter, pixel threshold 0.5, no minimum area: defect-pair Dice {np.mean(ungated):.3f}; "
          "per class " + " / ".join(f"{np.mean(ds):.3f} ({len(ds)})" if ds else "- (0)" for ds in per_class))
    print("in-sample frontier (one setting per class, chosen on the scored images: not a CV figure):")
    print(f"{'score':>8} {'defect Dice':>12}  classes on")
    step = max(1, len(front) // 20)
    for s, d, how in front[::step] + ([front[-1]] if (len(front) - 1) % step else []):
        on = ",".join(str(c + 1) for c, h in enumerate(how) if h != "off") or "-"
        print(f"{s:8.4f} {d:12.3f}  {on}")
    best_at_target = max((d for s, d, _ in front if s >= target), default=None)
    print(f"best score {front[0][0]:.4f} (Dice {front[0][1]:.3f}); best Dice {front[-1][1]:.3f} (score {front[-1][0]:.4f})")
    if best_at_target is None:
        print(f"no setting reaches all-empty + {GOAL_MARGIN} = {target:.4f}")
    else:
        print(f"best defect-pair Dice at a score >= {target:.4f}: {best_at_target:.3f} (goal {GOAL_DICE})")
    from steelfast.severstal import PREVALENCE
    from steelfast.training.gate_tuning import SLACK

    need = break_even(data.presence, oof.fold, PREVALENCE)
    print(f"the shipped rule (Kaggle rates, slack {SLACK}) switches a class on only where its gated masks' recall "
          "times mean Dice on the tuning positives is at least, per class (range over folds): "
          + " / ".join(f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(need.min(axis=0), need.max(axis=0))))
    pairs = [len(ds) for ds in per_class]
    print(f"with class {int(np.argmax(pairs)) + 1} alone on, the Dice goal needs its defect-pair Dice >= "
          f"{GOAL_DICE * defect / max(pairs):.2f} ({max(pairs)} of {defect} defect pairs)")
    print("both goals reachable by post-processing alone:",
          "yes" if best_at_target is not None and best_at_target >= GOAL_DICE else "no")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([d for _, d, _ in front], [s for s, _, _ in front], "o-", ms=3, label="in-sample frontier")
        ax.axhline(target, color="tab:red", ls="--", lw=1, label=f"goal: all-empty + {GOAL_MARGIN}")
        ax.axhline(all_empty, color="grey", ls=":", lw=1, label="all-empty")
        ax.axvline(GOAL_DICE, color="tab:red", ls="-.", lw=1, label=f"goal: defect-pair Dice {GOAL_DICE}")
        ax.set_xlabel("mean Dice on defect pairs")
        ax.set_ylabel("Kaggle score" + (" at the real class rates" if args.real_rates else ""))
        ax.set_title(args.out.name)
        ax.legend(fontsize=8)
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
