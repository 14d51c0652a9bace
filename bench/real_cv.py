"""k-fold cross-validation of the gated EfficientNet-Lite0 U-Net on the real labelled images.

Uses the real material in ``../shared/data/severstal`` (or ``$STEELFAST_SHARED_DATA``): the 53
fully labelled train images are scored; the 64 images with class presence only are dealt to the
folds as well (they train the other folds' models: the gate and the absent classes; and their
out-of-fold gate probabilities help tune the gate) but are never scored.

The shipped default model was made on one CUDA GPU, all six trainings side by side::

    for F in 0 1 2 3 4; do python bench/real_cv.py fold --fold $F --out runs/cv --device cuda --threads 1 & done
    python bench/real_cv.py final --out runs/cv --device cuda --threads 1; wait

Per fold, a model trains on the other folds; the gate, pixel thresholds and minimum areas that
score the fold are tuned on the out-of-fold predictions of the *other* folds only. Folds are
stratified by (fully labelled, class-presence pattern) with a fixed seed.

Steps (each fold and the final model are separate processes, so that two can run side by side
with one thread each on a 2-core machine; ``all`` runs everything in one process):

    python bench/real_cv.py fold --fold 0 --out runs/cv      # ... for folds 0..4
    python bench/real_cv.py final --out runs/cv              # the model trained on all images
    python bench/real_cv.py report --out runs/cv --save steelfast/weights/default.safetensors
    python bench/real_cv.py all --out runs/cv --save model.safetensors

Every fold of ``--arch effnet-lite0`` keeps its model (``model_F.safetensors``, ungated, with the
ImageIds, settings and data digest it trained on). With ``--unlabelled`` each model first needs a
teacher trained on the same images; ``--teacher RUN`` takes the fold and final models of an earlier
run without ``--unlabelled`` instead of training them again (they are checked to match)::

    python bench/real_cv.py fold --fold 0 --out runs/cv    # ... then, with teachers reused:
    python bench/real_cv.py fold --fold 0 --out runs/pseudo --teacher runs/cv --unlabelled DIR

``report`` merges the folds, prints and writes the CV figures (``cv.json``, ``folds.csv``,
``report.txt``) and, with ``--save``, tunes the gate on all out-of-fold predictions, sets it in
the final model and saves it with metadata that records the data, the settings and the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

#: Trainer options settable from the command line (flag -> GatedTrainConfig field and type).
_OPTIONS = {"epochs": int, "batch_size": int, "lr": float, "encoder_lr_scale": float,
            "gate_weight": float, "full_repeat": int, "frozen_blocks": int, "scale": float, "amp": str,
            "area_weight": float}


def _config(args: argparse.Namespace):
    from steelfast.training.gated import GatedTrainConfig

    cfg = GatedTrainConfig(seed=args.seed, threads=args.threads, device=args.device)
    for name in _OPTIONS:
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    try:
        cfg.validate()
    except (ValueError, TypeError) as e:  # a bad option value: one line, before any data is read
        raise SystemExit(f"bad trainer option: {e}") from None
    return cfg


def _training_set(args, data, train, pseudo, cfg, say, name):
    """``train`` with ``--synth``'s images made of it, then ``pseudo``'s images its own teacher labels.

    With ``--teacher DIR`` the teacher is ``DIR/name`` (the model a run without ``--unlabelled``
    trained on the same images), checked and reused instead of trained anew.
    """
    train = _with_synth(args, data, train)
    if pseudo is None:
        return train
    teacher = None
    if args.teacher is not None:
        from steelfast.training.pseudo import load_teacher

        try:
            teacher = load_teacher(args.teacher / name, train, cfg)
        except (OSError, ValueError) as e:
            raise SystemExit(f"--teacher: {e}") from None
        say(f"teacher: {args.teacher / name} (reused)")
    return pseudo(train, cfg, progress=say, teacher=teacher)


def _with_synth(args, data, train):
    """The real training images, plus or replaced by synthetic ones made of them (``--synth``)."""
    if not args.synth:
        return train
    from steelfast.data.real import LabelledSet, shared_data_dir
    from steelfast.data.realsynth import RealParts, load_shape_bank, synthesize

    # Shapes from the real masks of images that are not in the data at all (never a scored one).
    bank = load_shape_bank(shared_data_dir() / "train_partial.csv", exclude=data.ids)
    parts = RealParts.from_set(train, bank, sheets=args.synth_sheets)
    synth = synthesize(parts, args.synth, seed=args.seed * 100 + args.fold)
    if args.synth_maps_only:  # their class presence stays out of the gate loss
        synth.gate[:] = False
    return synth if args.synth_only else LabelledSet.concat([train, synth])


def _pseudo(args, data):
    """The unlabelled images of ``--unlabelled`` (None without it), checked against every labelled image."""
    if args.unlabelled is None:
        return None
    from steelfast.training.pseudo import PseudoLabels

    pseudo = PseudoLabels.from_folder(args.unlabelled, negative=args.pseudo_negative, positive=args.pseudo_positive)
    pseudo.check_disjoint(data.ids)  # before any training: a scored image must not join as unlabelled
    return pseudo


def auc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a positive scores above a negative (ties count half)."""
    pos, neg = score[truth.astype(bool)], score[~truth.astype(bool)]
    if not len(pos) or not len(neg):
        return float("nan")
    return float(((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean())


def _network(args):
    """A new network for ``--arch unet`` (the baseline with a gate head); None: train_gated's GatedUNet."""
    if args.arch == "effnet-lite0":
        return None
    import torch
    from baseline_gated import GatedBaselineUNet

    torch.manual_seed(args.seed * 100 + args.fold)
    return GatedBaselineUNet()


def _model_file(fold: int | None) -> str:
    """The saved ungated model of a fold (None: the final model), and its teacher's name under --teacher."""
    return "final_ungated.safetensors" if fold is None else f"model_{fold}.safetensors"


def _step_folds(args) -> list[int]:
    """The folds the step trains."""
    return [] if args.step not in ("fold", "all") else list(range(args.folds)) if args.step == "all" else [args.fold]


def _check_teachers(args) -> None:
    """Before anything is read or trained: --teacher's folder has the models this step needs, and is not --out."""
    if args.unlabelled is None:
        raise SystemExit("--teacher needs --unlabelled")
    if args.out.resolve() == args.teacher.resolve():
        raise SystemExit("--teacher must be another run folder than --out (its models would be overwritten), "
                         f"got {str(args.teacher)!r}")
    if args.step == "report":
        return
    names = [_model_file(f) for f in _step_folds(args)] + ([_model_file(None)] if args.step in ("final", "all") else [])
    missing = [n for n in names if not (args.teacher / n).is_file()]
    if missing:
        raise SystemExit(f"--teacher {str(args.teacher)!r} lacks {', '.join(missing)} (run the steps without "
                         "--unlabelled there first)")


def _fold(args, data, cfg, pseudo) -> None:
    from steelfast._device import resolve_device
    from steelfast.training.crossval import stratified_folds
    from steelfast.training.gated import predict_set, train_gated

    folds = stratified_folds(data, args.folds, seed=args.seed)
    train_idx, test_idx = np.flatnonzero(folds != args.fold), np.flatnonzero(folds == args.fold)
    say = lambda s: print(f"fold {args.fold}: {s}", flush=True)  # noqa: E731
    train = _training_set(args, data, data.subset(train_idx), pseudo, cfg, say, _model_file(args.fold))
    model = train_gated(train, cfg, model=_network(args), progress=say)
    if args.arch == "effnet-lite0":  # kept: the fold's teacher for a later --teacher run
        _save_model(args.out / _model_file(args.fold), model, cfg, train, pseudo, fold=args.fold)
    seg, gate = predict_set(model.to(resolve_device(cfg.device)), data.images[test_idx])
    save_oof(args.out, args.fold, folds, data, seg, gate, {
        **asdict(cfg), "arch": args.arch, "synth": args.synth, "synth_only": args.synth_only,
        "synth_sheets": args.synth_sheets, "unlabelled": None if pseudo is None else pseudo.describe(),
        "teacher": None if args.teacher is None else str(args.teacher),
        # Recorded when set only: a fold re-run with this script then matches the folds of before.
        **({"synth_maps_only": True} if args.synth_maps_only else {})})


def save_oof(out: Path, fold: int, folds: np.ndarray, data, seg: np.ndarray, gate: np.ndarray, config: dict,
             **extra) -> None:
    """Write ``oof_F.npz``: the fold's held-out predictions, the folds and ImageIds, and the run's
    settings (``config``: the trainer's plus ``arch``, ``synth``, ``synth_only``, ``synth_sheets``,
    ``synth_maps_only`` (when set), ``unlabelled``, ``teacher``), which :func:`load_run` checks to agree across the folds."""
    np.savez(out / f"oof_{fold}.npz", idx=np.flatnonzero(folds == fold), fold=folds, seg=seg, gate=gate,
             config=json.dumps(config), ids=np.array(data.ids), **extra)


def _final(args, data, cfg, pseudo) -> None:
    from steelfast.training.gated import train_gated

    args.fold = args.folds  # a seed of its own for the final model's synthetic images
    say = lambda s: print(f"final: {s}", flush=True)  # noqa: E731
    train = _training_set(args, data, data, pseudo, cfg, say, _model_file(None))
    model = train_gated(train, cfg, progress=say)
    _save_model(args.out / _model_file(None), model, cfg, train, pseudo, fold=None)


def _save_model(path, model, cfg, train, pseudo, fold) -> None:
    """An ungated fold or final model, with what it was trained on (ImageIds and digest too, for --teacher's check)."""
    from steelfast.checkpoint import save_checkpoint

    save_checkpoint(path, model, {"training": {
        "config": asdict(cfg), **cfg.resolved(), "fold": fold, "ids": list(train.ids),
        "digest": train.digest(areas=cfg.area_weight > 0),  # areas count where they trained it
        "pseudo_labels": None if pseudo is None else pseudo.describe()}})


def load_run(out: Path, folds: int, data):
    """Merge a run's ``oof_F.npz`` files: ``(OutOfFold, set of recorded configs as JSON, set of teacher folders)``.

    Raises SystemExit naming the file when one is missing or was made on other folds or images.
    """
    from steelfast.training.crossval import OutOfFold
    from steelfast.training.gated import LEGACY_CONFIG

    seg = np.zeros((len(data), 4, 256, 1600), np.uint8)
    gate = np.zeros((len(data), 4), np.float32)
    fold, covered, configs, teachers = None, np.zeros(len(data), bool), set(), set()
    for f in range(folds):
        path = out / f"oof_{f}.npz"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run the 'fold' step for fold {f} first")
        z = np.load(path)
        if fold is not None and not np.array_equal(z["fold"], fold):
            raise SystemExit(f"{path} was made with other folds than oof_0.npz (another --folds or --seed?)")
        if "ids" in z and list(z["ids"]) != data.ids:
            raise SystemExit(f"{path} was made on other images than the current data")
        seg[z["idx"]], gate[z["idx"]], fold = z["seg"], z["gate"], z["fold"]
        covered[z["idx"]] = True
        if "config" in z:
            recorded = {**LEGACY_CONFIG, **json.loads(str(z["config"]))}  # files from before a field: its old value
            teachers.add(recorded.pop("teacher", None))  # where a teacher came from (checked to match), not a setting
            configs.add(json.dumps(recorded, sort_keys=True))
    if not covered.all() or int(fold.max()) + 1 != folds:
        raise SystemExit(f"the fold files cover {int(covered.sum())} of {len(data)} images for --folds {folds}")
    if len(configs) > 1:
        first, *others = [json.loads(c) for c in sorted(configs)]
        keys = sorted(k for k in set(first).union(*others) if any(first.get(k) != o.get(k) for o in others))
        raise SystemExit(f"the fold files were trained with different configs (they differ in {', '.join(keys)})")
    return OutOfFold(fold, seg, gate), configs, teachers


def _report(args, data, cfg) -> None:
    from steelfast.checkpoint import load_checkpoint
    from steelfast.severstal import PREVALENCE
    from steelfast.training.crossval import cross_validate
    from steelfast.training.fit import cv_text, save_gated
    from steelfast.training.gate_tuning import tune_gate
    from steelfast.training.gated import GatedTrainConfig

    prevalence = PREVALENCE if args.prevalence is None else args.prevalence
    oof, configs, teachers = load_run(args.out, args.folds, data)
    synth, arch, unlabelled = {}, "effnet-lite0", None
    if configs:  # record the config the folds were really trained with
        recorded = json.loads(configs.pop())
        synth = {k: recorded.pop(k) for k in ("synth", "synth_only", "synth_sheets", "synth_maps_only")
                 if k in recorded}
        unlabelled = recorded.pop("unlabelled", None)
        arch = recorded.pop("arch", "effnet-lite0")
        if arch != "effnet-lite0" and args.save is not None:
            raise SystemExit(f"the folds trained the {arch!r} comparison network; only effnet-lite0 is saved")
        cfg = GatedTrainConfig(**recorded)
    cv = cross_validate(data, oof, prevalence=prevalence)
    summary = cv.summary()
    text = cv_text(data, cv)
    text += "gate AUC out of fold (all images, class presence), classes 1-4: " + " / ".join(
        f"{auc(data.presence[:, c], oof.gate[:, c]):.3f}" for c in range(data.presence.shape[1])) + "\n"
    (args.out / "cv.json").write_text(json.dumps(
        {"data": data.source, "arch": arch, "config": asdict(cfg), "synthetic": synth, "pseudo_labels": unlabelled,
         "teachers": sorted(t for t in teachers if t is not None), **summary, "choices": [c.to_dict() for c in cv.choices]},
        indent=2) + "\n")
    cv.folds.to_csv(args.out / "folds.csv", index=False)
    (args.out / "report.txt").write_text(text)
    print(text)
    if args.save is not None:
        choice = tune_gate(oof.seg, oof.gate, data.masks, data.presence, prevalence=prevalence)
        model, final_meta = load_checkpoint(args.out / _model_file(None))
        if final_meta.get("training", {}).get("pseudo_labels") != unlabelled:
            raise SystemExit("the final model and the folds were trained with different --unlabelled settings")
        model.set_gate_thresholds(choice.gate)
        command = "python bench/real_cv.py " + " ".join(sys.argv[1:])
        path = save_gated(args.save, model, choice, data, cfg, summary, command,
                          {"real_cv": synth} if synth.get("synth") else None, unlabelled, prevalence,
                          {k: final_meta["training"][k] for k in ("device", "autocast") if k in final_meta["training"]}
                          or None)  # None: a final model from before it was recorded
        print(f"saved {path}: gate {choice.gate}, thresholds {choice.thresholds}, min areas {choice.min_areas}")
        print(json.dumps(choice.details, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["fold", "final", "report", "all"], help="what to run")
    ap.add_argument("--out", type=Path, required=True, help="work folder (oof_F.npz, final model, reports)")
    ap.add_argument("--fold", type=int, default=0, help="fold to train and predict (step 'fold')")
    ap.add_argument("--folds", type=int, default=5, help="number of folds")
    ap.add_argument("--seed", type=int, default=0, help="seed of folds, weights and augmentations")
    for name, kind in _OPTIONS.items():
        ap.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                        help=f"trainer option {name} (default: GatedTrainConfig's)")
    ap.add_argument("--arch", choices=["effnet-lite0", "unet"], default="effnet-lite0",
                    help="the default model's gated EfficientNet-Lite0 U-Net, or the seed's baseline U-Net with "
                         "the same gate head (baseline_gated.py; compared, never saved)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    ap.add_argument("--synth", type=int, default=0,
                    help="add this many synthetic images made of each model's real training images "
                         "(steelfast.data.realsynth; shapes from train_partial.csv masks of other images)")
    ap.add_argument("--synth-only", action="store_true", help="train on the synthetic images alone")
    ap.add_argument("--synth-maps-only", action="store_true",
                    help="the synthetic images train the segmentation maps only; the gate learns from real images")
    ap.add_argument("--synth-sheets", choices=["all", "defect-free"], default="all",
                    help="sheets of the synthetic images: every real training image (its defects kept) "
                         "or only the defect-free ones (every defect pasted)")
    ap.add_argument("--unlabelled", type=Path, default=None,
                    help="folder of unlabelled images (e.g. ../shared/data/severstal/test_images) that join each "
                         "model's training through a teacher trained on that model's training images")
    ap.add_argument("--pseudo-negative", type=float, default=None,
                    help="with --unlabelled: absent at gate <= this (default 0.05)")
    ap.add_argument("--pseudo-positive", type=float, default=None,
                    help="with --unlabelled: present at gate >= this (default 0.95)")
    ap.add_argument("--teacher", type=Path, default=None,
                    help="with --unlabelled: reuse the fold and final models of this earlier run (same folds, "
                         "seed, settings, no --unlabelled) as the teachers instead of training them again")
    ap.add_argument("--save", type=Path, default=None, help="step 'report': save the gated final model here")
    ap.add_argument("--prevalence", default=None,
                    help="steps 'report' and 'all': tune the gate for the share of images holding each class "
                    "where the model will run, e.g. 0.05,0.01,0.30,0.05 (default: the Kaggle train set's)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")

    from steelfast.data.real import load_shared

    if args.arch != "effnet-lite0" and args.step in ("final", "all"):  # before any training
        raise SystemExit(f"--arch {args.arch} is a comparison on the folds (steps 'fold' and 'report'); "
                         "the final model is effnet-lite0 only")
    cfg = _config(args)
    if args.synth_maps_only and (not args.synth or args.synth_only):
        raise SystemExit("--synth-maps-only needs --synth N and real images beside them (not --synth-only)")
    if args.unlabelled is None and (args.pseudo_negative is not None or args.pseudo_positive is not None):
        raise SystemExit("--pseudo-negative and --pseudo-positive need --unlabelled")
    if args.teacher is not None:
        _check_teachers(args)
    if args.prevalence is not None:
        from steelfast._validate import check_prevalence
        from steelfast.severstal import PREVALENCE

        if args.step not in ("report", "all"):
            raise SystemExit("--prevalence is an option of the steps 'report' and 'all' (it tunes the gate)")
        try:
            args.prevalence = check_prevalence(args.prevalence, len(PREVALENCE))
        except ValueError as e:  # argparse hands over text: a TypeError would be a bug here
            raise SystemExit(f"--prevalence: {e}") from None
    if args.unlabelled is not None:
        from steelfast.training.pseudo import check_rule

        args.pseudo_negative, args.pseudo_positive = check_rule(args.pseudo_negative, args.pseudo_positive)
    data = load_shared()
    args.out.mkdir(parents=True, exist_ok=True)
    pseudo = _pseudo(args, data) if args.step != "report" else None  # read once, for every model of the step
    if args.step in ("fold", "all"):
        for f in _step_folds(args):
            args.fold = f
            _fold(args, data, cfg, pseudo)
    if args.step in ("final", "all"):
        _final(args, data, cfg, pseudo)
    if args.step in ("report", "all"):
        _report(args, data, cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
