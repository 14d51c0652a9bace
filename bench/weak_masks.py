"""Weak images with their teacher's masks: a variant of ``real_cv.py``'s fold step, scored the same way.

The weakly labelled images say which classes an image holds, not where. Here each fold's teacher,
the fold model of an earlier ``real_cv.py`` run on the same folds, seed and settings (checked by
:func:`steelfast.training.pseudo.load_teacher`), predicts their maps. A weak image whose every
present class gets a mask of at least ``--min-area`` pixels at p > ``--threshold`` becomes a fully
labelled image with those masks (its absent classes empty); the others stay weak. The fold's model
trains on that set, and its out-of-fold predictions go to ``oof_F.npz``, which ``real_cv.py
report`` scores as any run (the scored images are the 53 fully labelled ones, never changed)::

    python bench/real_cv.py fold --fold F --out runs/cv            # the teachers, F = 0..4
    python bench/weak_masks.py --fold F --out runs/wm --teacher runs/cv
    python bench/real_cv.py report --out runs/wm

The teacher's maps of its own training images are in-sample for the gate but not for these masks:
a weak image's present classes never had a pixel target.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np


def with_teacher_masks(train, seg: np.ndarray, threshold: float, min_area: int):
    """``(set, converted)``: ``train`` with its weak images that the maps ``seg`` (uint8 (W, C, H, W)
    × 255, one per weak image in order) cover turned into fully labelled ones, and how many were."""
    from steelfast.data.real import LabelledSet

    weak = np.flatnonzero(~train.full)
    if len(seg) != len(weak):
        raise ValueError(f"{len(seg)} teacher maps for {len(weak)} weak images")
    cut = int(np.floor(threshold * 255))  # p > t as in the gate tuning
    full, masks, converted = train.full.copy(), list(train.masks), 0
    for k, i in enumerate(weak):
        m = (seg[k] > cut).astype(np.uint8)
        m[~train.presence[i]] = 0
        present = np.flatnonzero(train.presence[i])
        if len(present) and all(m[c].sum() >= min_area for c in present):
            full[i], masks[i] = True, m
            converted += 1
    areas = train.areas.copy()
    areas[full] = np.nan  # a full image's masks hold its areas
    return LabelledSet(train.ids, train.images, train.presence, full, masks, train.source, train.gate,
                       areas), converted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fold", type=int, required=True, help="fold to train and predict")
    ap.add_argument("--folds", type=int, default=5, help="number of folds")
    ap.add_argument("--seed", type=int, default=0, help="seed of folds, weights and augmentations (the teacher's)")
    ap.add_argument("--out", type=Path, required=True, help="work folder (oof_F.npz)")
    ap.add_argument("--teacher", type=Path, required=True, help="a real_cv.py run folder with model_F.safetensors")
    ap.add_argument("--threshold", type=float, default=0.5, help="pixel probability of a teacher's mask")
    ap.add_argument("--min-area", type=int, default=1000, help="pixels each present class's mask needs")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'auto'")
    args = ap.parse_args(argv)
    if not 0 <= args.threshold < 1 or args.min_area < 1:
        raise SystemExit(f"--threshold must be in [0, 1) and --min-area >= 1, got {args.threshold}, {args.min_area}")
    teacher_file = args.teacher / f"model_{args.fold}.safetensors"
    if not teacher_file.is_file():
        raise SystemExit(f"{teacher_file} is missing: run real_cv.py's fold step there first")
    import torch
    from real_cv import save_oof  # bench/ is the script's folder, first on sys.path

    from steelfast.data.real import load_shared
    from steelfast.training.crossval import stratified_folds
    from steelfast.training.gated import GatedTrainConfig, predict_set, train_gated
    from steelfast.training.pseudo import load_teacher

    cfg = GatedTrainConfig(seed=args.seed, threads=args.threads, device=args.device)
    data = load_shared()
    folds = stratified_folds(data, args.folds, seed=args.seed)
    train_idx, test_idx = np.flatnonzero(folds != args.fold), np.flatnonzero(folds == args.fold)
    train = data.subset(train_idx)
    try:
        teacher = load_teacher(teacher_file, train, cfg)
    except (OSError, ValueError) as e:
        raise SystemExit(f"--teacher: {e}") from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seg, _ = predict_set(teacher, train.images[~train.full])
    student, converted = with_teacher_masks(train, seg, args.threshold, args.min_area)
    say = lambda s: print(f"fold {args.fold}: {s}", flush=True)  # noqa: E731
    say(f"{converted} of {int((~train.full).sum())} weak images get teacher masks")
    model = train_gated(student, cfg, progress=say)
    seg, gate = predict_set(model, data.images[test_idx])
    args.out.mkdir(parents=True, exist_ok=True)
    # The settings of a plain real_cv.py run (so that its report reads the run); the masks' own apart.
    save_oof(args.out, args.fold, folds, data, seg, gate, {
        **asdict(cfg), "arch": "effnet-lite0", "synth": 0, "synth_only": False, "synth_sheets": "all",
        "unlabelled": None, "teacher": None},
        weak_masks=json.dumps({"teacher": str(args.teacher), "threshold": args.threshold, "min_area": args.min_area,
                               "converted": converted}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
