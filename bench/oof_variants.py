"""Out-of-fold variants of real_cv.py runs, scored by the same nested cross-validation.

Two things a single run cannot tell: whether flip TTA helps the gated model, and whether averaging
several models would. Both reuse what a run keeps, so nothing is trained again:

* ``flips`` runs each fold's kept model (``model_F.safetensors``) on its held-out images flipped
  left-right and upside down, flips the maps back and writes ``flips_F.npz`` beside ``oof_F.npz``.
* ``score`` averages, per image, the segmentation maps *and* the gate probabilities of the chosen
  flips (``--tta w``: the image and its left-right flip; ``wh``: both flips too), and of other runs
  made on the same folds (``--with RUN2 RUN3``), then tunes and scores the gate exactly as
  ``real_cv.py report`` does (per fold on the other folds only) and prints its report.

::

    python bench/oof_variants.py flips --out runs/cv
    python bench/oof_variants.py score --out runs/cv --tta wh
    python bench/oof_variants.py score --out runs/cv --with runs/pseudo runs/mix
    python bench/oof_variants.py score --out runs/cv --maps-from runs/mix

``--maps-from RUN`` takes the segmentation maps from another run on the same folds and keeps the
gate of ``--out``: whether one recipe's segmenter (trained with the synthetic mix, say) and
another's gate would make a better pair than either run alone.

Averaging the gate before gating is what a TTA or an ensemble of a gated model should do; the
figures say whether it is worth its two to three times the inference cost (bench/README.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: Flip name -> image axis of a (N, H, W) stack.
FLIPS = {"w": 2, "h": 1}
TTA = {"none": (), "w": ("w",), "wh": ("w", "h")}


def predict(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, C, H, W) maps × 255 and float32 (N, C) gate probabilities, ungated."""
    from steelfast.training.gated import predict_set

    return predict_set(model, images)


def flips(out: Path, folds: int, data, device: str = "cpu") -> None:
    """Write ``flips_F.npz`` (``seg_w``, ``gate_w``, ``seg_h``, ``gate_h``, and the SHA-256 of the
    fold model that made them) for every fold of ``out``."""
    from real_cv import load_run  # bench/ is the script's folder, first on sys.path

    from steelfast._device import resolve_device
    from steelfast.checkpoint import load_checkpoint
    from steelfast.model_files import file_sha256

    fold = load_run(out, folds, data)[0].fold  # every fold's oof_F.npz there and consistent
    for f in range(folds):
        path = out / f"model_{f}.safetensors"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: only runs of --arch effnet-lite0 keep their fold models")
        idx = np.flatnonzero(fold == f)
        model, _ = load_checkpoint(path)
        model = model.to(resolve_device(device)).eval()
        res = {}
        for name, axis in FLIPS.items():
            seg, gate = predict(model, np.ascontiguousarray(np.flip(data.images[idx], axis)))
            res["seg_" + name] = np.ascontiguousarray(np.flip(seg, axis + 1))  # back: (N, C, H, W)
            res["gate_" + name] = gate
        np.savez(out / f"flips_{f}.npz", idx=idx, model_sha256=file_sha256(path), **res)
        print(f"fold {f}: {out / f'flips_{f}.npz'}", flush=True)


def merged(runs: list[Path], folds: int, data, tta: str):
    """The OutOfFold of ``runs`` (same folds) with the ``tta`` flips, maps and gates averaged."""
    from real_cv import load_run  # bench/ is the script's folder, first on sys.path

    from steelfast.model_files import file_sha256
    from steelfast.training.crossval import OutOfFold

    seg, gate, fold = None, None, None
    n = 0
    for run in runs:
        oof, _, _ = load_run(run, folds, data)
        if fold is not None and not np.array_equal(oof.fold, fold):
            raise SystemExit(f"{run} was made on other folds than {runs[0]} (another --seed?): "
                             "only runs on the same folds average out of fold")
        fold = oof.fold
        parts = [(oof.seg, oof.gate)] + [(np.zeros_like(oof.seg), np.zeros_like(oof.gate)) for _ in TTA[tta]]
        for f in range(folds) if TTA[tta] else ():  # each fold's flip file read and checked once
            path, model = run / f"flips_{f}.npz", run / f"model_{f}.safetensors"
            rerun = f"run 'python bench/oof_variants.py flips --out {run}'"
            if not path.is_file():
                raise SystemExit(f"{path} is missing: {rerun} first")
            z = np.load(path)
            if not np.array_equal(z["idx"], np.flatnonzero(fold == f)):
                raise SystemExit(f"{path} was made on other folds than {run / f'oof_{f}.npz'}: {rerun} again")
            if "model_sha256" in z and model.is_file() and str(z["model_sha256"]) != file_sha256(model):
                raise SystemExit(f"{path} was made by another {model.name} than the one in {run}: {rerun} again")
            for (fs, fg), name in zip(parts[1:], TTA[tta]):
                fs[z["idx"]], fg[z["idx"]] = z["seg_" + name], z["gate_" + name]
        for s, g in parts:
            seg = s.astype(np.float32) if seg is None else seg + s
            gate = g.astype(np.float64) if gate is None else gate + g
            n += 1
    return OutOfFold(fold, np.round(seg / n).astype(np.uint8), (gate / n).astype(np.float32))


def with_maps_of(oof, other, source: Path):
    """``oof`` with the segmentation maps of ``other`` (made on the same folds), its gate kept."""
    from steelfast.training.crossval import OutOfFold

    if not np.array_equal(oof.fold, other.fold):
        raise SystemExit(f"{source} was made on other folds than the gate's run (another --seed?): "
                         "maps and gate must come from the same folds")
    return OutOfFold(oof.fold, other.seg, oof.gate)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["flips", "score"])
    ap.add_argument("--out", type=Path, required=True, help="a real_cv.py run folder")
    ap.add_argument("--folds", type=int, default=5, help="its number of folds")
    ap.add_argument("--tta", choices=list(TTA), default="none", help="step 'score': the flips averaged in")
    ap.add_argument("--with", dest="others", type=Path, nargs="*", default=[],
                    help="step 'score': other runs on the same folds, averaged in")
    ap.add_argument("--maps-from", dest="maps_from", type=Path, default=None,
                    help="step 'score': take the maps from this run (same folds), the gate from --out (and --with)")
    ap.add_argument("--prevalence", default=None, help="step 'score': as real_cv.py report's")
    ap.add_argument("--device", default=None, help="step 'flips': where the fold models run (default: cpu)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.step == "flips" and (args.others or args.tta != "none" or args.prevalence is not None
                                 or args.maps_from is not None):
        raise SystemExit("--tta, --with, --maps-from and --prevalence are options of the step 'score'")
    if args.step == "score" and args.device is not None:
        raise SystemExit("--device is an option of the step 'flips' (score runs no model)")
    from steelfast._validate import check_prevalence
    from steelfast.severstal import PREVALENCE

    try:
        prevalence = check_prevalence(args.prevalence, len(PREVALENCE))
    except ValueError as e:
        raise SystemExit(f"--prevalence: {e}") from None
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    from steelfast.data.real import load_shared

    data = load_shared()
    if args.step == "flips":
        flips(args.out, args.folds, data, args.device or "cpu")
        return 0
    from real_cv import auc

    from steelfast.training.crossval import cross_validate
    from steelfast.training.fit import cv_text

    oof = merged([args.out, *args.others], args.folds, data, args.tta)
    if args.maps_from is not None:
        oof = with_maps_of(oof, merged([args.maps_from], args.folds, data, args.tta), args.maps_from)
    cv = cross_validate(data, oof, prevalence=prevalence)
    maps = f"; maps from {args.maps_from}" if args.maps_from is not None else ""
    print(f"runs: {', '.join(str(r) for r in [args.out, *args.others])}; flip TTA: {args.tta}{maps}")
    print(cv_text(data, cv), end="")
    print("gate AUC out of fold (all images, class presence), classes 1-4: " + " / ".join(
        f"{auc(data.presence[:, c], oof.gate[:, c]):.3f}" for c in range(data.presence.shape[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
