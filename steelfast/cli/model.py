"""Model commands: ``steelfast train`` (the U-Net or the gated EfficientNet U-Net) and
``steelfast evaluate``.

In: command-line arguments. Out: a run folder with checkpoints and history (train), or the
per-class score table on stdout (evaluate). The library modules these call import torch, so they
are imported when a command runs: ``steelfast --help`` and the data commands stay fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from steelfast.cli.app import app, domain_errors, refuse_options, reported_here, version_option

__all__ = ["GATED_ONLY", "UNET_FAST", "UNET_ONLY", "evaluate_cmd", "train"]

#: U-Net training defaults: the fast configuration behind the README's quality figures
#: (``bench/train_quality.py --lr 3e-3 --lr-schedule cosine --crop-width 256 --batch-size 16``);
#: the benchmark's budget stops it, so ``epochs`` is the CLI's own.
UNET_FAST: dict[str, Any] = {
    "epochs": 30, "batch_size": 16, "lr": 3e-3, "crop_width": 256, "lr_schedule": "cosine"
}

#: ``train`` parameters only the U-Net trainer uses, refused with ``--arch gated-effnet-lite0``
#: (the gated trainer has its own recipe, folds instead of a validation split, and no resume).
UNET_ONLY = ("crop_width", "only_defects", "class_balance", "lr_schedule", "dice_mode", "val_fraction", "flips",
             "in_channels", "channels_last", "workers", "time_budget", "tune", "resume", "max_train_images",
             "max_val_images")
#: ``train`` parameters only the gated trainer uses, refused with ``--arch unet``.
GATED_ONLY = ("presence", "folds", "synth_ratio", "shapes", "synth_sheets", "synth_gate", "unlabelled",
              "pseudo_negative", "pseudo_positive", "prevalence", "area_weight")


@app.command()
@domain_errors
def train(
    ctx: typer.Context,
    data_dir: Path = typer.Argument(
        ..., metavar="DATA_DIR", help="Kaggle-layout folder with train.csv and train_images/."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Run folder: unet: best.*, last.*, history.csv and history.png; gated-effnet-lite0: "
        "model.safetensors/.json, cv.json, report.txt and report.png.",
    ),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Number of epochs (default: 30)."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="Images per step, per process under torchrun (default: 16 unet, 4 gated)."
    ),
    lr: Optional[float] = typer.Option(
        None, "--lr", help="Adam(W) learning rate (default: 3e-3 unet, 1e-3 gated)."
    ),
    crop_width: int = typer.Option(
        UNET_FAST["crop_width"], "--crop-width",
        help="unet: train on random crops this wide (multiple of 32); 0 = full width.",
    ),
    only_defects: bool = typer.Option(
        True, "--only-defects/--all-images",
        help="unet: train on defective images only (the baseline) or on all; validation always uses all.",
    ),
    class_balance: float = typer.Option(
        0.0, "--class-balance",
        help="unet: draw rare classes more often: 0 = each image once per epoch, 0.5 = square-root, 1 = equal.",
    ),
    lr_schedule: str = typer.Option(
        UNET_FAST["lr_schedule"], "--lr-schedule", help="unet: constant or cosine (decay to zero)."
    ),
    dice_mode: str = typer.Option("global", "--dice-mode", help="unet: soft Dice pooling of the loss: global, class or pair."),
    val_fraction: float = typer.Option(0.15, "--val-fraction", help="unet: share of images held out for validation."),
    flips: bool = typer.Option(False, "--flips/--no-flips", help="unet: random horizontal and vertical flips (the gated trainer always flips)."),
    seed: int = typer.Option(0, "--seed", help="Seed of split, weights, order and augmentations."),
    in_channels: int = typer.Option(3, "--channels", help="unet: input channels of the model (grey replicated)."),
    amp: Optional[str] = typer.Option(
        None, "--amp",
        help="Autocast: auto (fp16 on CUDA; bf16 on CPUs with native bf16, where it pays, else off), "
        "bf16, fp16 or off (default: auto for unet, off for gated-effnet-lite0, the shipped model's recipe).",
    ),
    channels_last: bool = typer.Option(
        True, "--channels-last/--no-channels-last", help="unet: channels-last memory format (faster on CPU)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: all cores)."),
    workers: int = typer.Option(0, "--workers", help="unet: DataLoader worker processes."),
    time_budget: Optional[float] = typer.Option(
        None, "--time-budget", help="unet: stop training after this many seconds, leaving time to validate."
    ),
    tune: bool = typer.Option(
        True, "--tune/--no-tune", help="unet: tune per-class threshold and minimum area on the validation set."
    ),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="unet: continue from a checkpoint (e.g. RUN/last.safetensors) and its .state.pt."
    ),
    max_train_images: Optional[int] = typer.Option(
        None, "--max-train-images", help="unet: use only the first N training images (quick runs)."
    ),
    max_val_images: Optional[int] = typer.Option(
        None, "--max-val-images", help="unet: use only the first N validation images (quick runs)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    arch: str = typer.Option(
        "unet", "--arch",
        help="unet (the baseline U-Net, trained from scratch) or gated-effnet-lite0 (ImageNet "
        "EfficientNet-Lite0 U-Net with a per-class gate tuned by k-fold CV; needs the pretrained extra).",
    ),
    presence: Optional[Path] = typer.Option(
        None, "--presence",
        help="gated-effnet-lite0: CSV of weakly labelled images (ImageId + area_class_1..4 or class_1..4).",
    ),
    folds: int = typer.Option(5, "--folds", help="gated-effnet-lite0: folds of the CV that tunes the gate."),
    synth_ratio: float = typer.Option(
        0.0, "--synth-ratio",
        help="gated-effnet-lite0: add this many synthetic images per real training image, made of each "
        "model's own training images (steelfast.data.realsynth); 0 = real images only.",
    ),
    shapes: Optional[Path] = typer.Option(
        None, "--shapes",
        help="gated-effnet-lite0 with --synth-ratio: label CSV (either format) whose masks give the pasted "
        "defect shapes (default: the training labels; a scored fold's rows are never used).",
    ),
    synth_sheets: str = typer.Option(
        "all", "--synth-sheets",
        help="gated-effnet-lite0 with --synth-ratio: all (every labelled image is a sheet) or defect-free.",
    ),
    synth_gate: bool = typer.Option(
        True, "--synth-gate/--synth-maps-only",
        help="gated-effnet-lite0 with --synth-ratio: the synthetic images train the gate and the maps, "
        "or the segmentation maps only (the gate learns from real images alone).",
    ),
    unlabelled: Optional[Path] = typer.Option(
        None, "--unlabelled",
        help="gated-effnet-lite0: folder of unlabelled 256x1600 images that join each model's training "
        "as pseudo-labels from a teacher trained on that model's training images (more than twice the training time).",
    ),
    pseudo_negative: Optional[float] = typer.Option(
        None, "--pseudo-negative",
        help="With --unlabelled: a class is absent when the teacher's gate is at most this (default 0.05).",
    ),
    pseudo_positive: Optional[float] = typer.Option(
        None, "--pseudo-positive",
        help="With --unlabelled: a class is present when the teacher's gate is at least this (default 0.95); "
        "images with a class in between are left out.",
    ),
    prevalence: Optional[str] = typer.Option(
        None, "--prevalence",
        help="gated-effnet-lite0: share of images holding each class where the model will run, four numbers "
        "such as 0.07,0.02,0.41,0.06; the gate is tuned for the score expected at those rates "
        "(default: the Kaggle train set's).",
    ),
    area_weight: float = typer.Option(
        0.0, "--area-weight",
        help="gated-effnet-lite0: weight of a loss that fits each weak image's present-class maps to the pixel "
        "areas of its --presence table (area_class_1..4 columns); 0 = those maps are not trained (the default).",
    ),
    version: bool = version_option(),
) -> None:
    """Train a model: the U-Net (validated and tuned every epoch, one line per epoch), or the gated
    EfficientNet U-Net (k-fold CV, gate and post-processing tuned out of fold, then a final model on
    all images). The U-Net defaults are the fast configuration of bench/train_quality.py."""
    if arch not in ("unet", "gated-effnet-lite0"):
        raise ValueError(f"--arch must be unet or gated-effnet-lite0, got {arch!r}")
    other = "unet" if arch == "gated-effnet-lite0" else "gated-effnet-lite0"
    refuse_options(ctx, UNET_ONLY if other == "unet" else GATED_ONLY, f"--arch {other}", f"--arch {arch}")
    if not synth_ratio and (shapes is not None or synth_sheets != "all" or not synth_gate):
        raise ValueError("--shapes, --synth-sheets and --synth-maps-only need --synth-ratio")
    if unlabelled is None and (pseudo_negative is not None or pseudo_positive is not None):
        raise ValueError("--pseudo-negative and --pseudo-positive need --unlabelled")
    if arch == "gated-effnet-lite0":
        _train_gated(data_dir, out, presence, folds, epochs, batch_size, lr, seed, threads, device, amp or "off",
                     (synth_ratio, shapes or data_dir / "train.csv", synth_sheets, synth_gate) if synth_ratio else None,
                     (unlabelled, pseudo_negative, pseudo_positive) if unlabelled is not None else None,
                     prevalence, area_weight)
        return
    from steelfast.training.config import TrainConfig
    from steelfast.training.loop import train as run_training

    config = TrainConfig(
        # "is None", not "or": an explicit --epochs 0 must reach the validation, not the default.
        epochs=UNET_FAST["epochs"] if epochs is None else epochs,
        batch_size=UNET_FAST["batch_size"] if batch_size is None else batch_size,
        lr=UNET_FAST["lr"] if lr is None else lr, crop_width=crop_width or None,
        only_defects=only_defects, class_balance=class_balance, lr_schedule=lr_schedule, dice_mode=dice_mode,
        val_fraction=val_fraction, flips=flips, seed=seed,
        architecture={**TrainConfig().architecture, "in_channels": in_channels}, amp=amp or "auto",
        channels_last=channels_last, device=device, threads=threads, num_workers=workers,
        time_budget_s=time_budget, tune=tune, max_train_images=max_train_images,
        max_val_images=max_val_images, progress=progress,
    )
    try:
        result = run_training(data_dir, out, config, resume=resume, epoch_log=typer.echo)
    except KeyboardInterrupt:
        last = out / "last.safetensors"
        hint = f": saved {last}; continue with --resume {last}" if last.is_file() else ""
        typer.echo(f"interrupted{hint}", err=True)
        raise typer.Exit(code=130) from None
    if result.rank != 0 or result.final is None:  # other torchrun ranks stay quiet
        return
    post = result.postprocess
    typer.echo(
        f"best epoch {result.best_epoch}: validation score {result.final['score']:.4f} "
        f"(thresholds {post['thresholds']}, min areas {post['min_areas']}), "
        f"{result.images_per_s:.1f} train images/s"
    )
    typer.echo(f"checkpoint: {result.best_path}")


def _train_gated(
    data_dir: Path, out: Path, presence: Optional[Path], folds: int, epochs: Optional[int],
    batch_size: Optional[int], lr: Optional[float], seed: int, threads: Optional[int], device: str, amp: str,
    synth: Optional[tuple[float, Path, str, bool]],
    pseudo_options: Optional[tuple[Path, Optional[float], Optional[float]]],
    prevalence: Optional[str], area_weight: float,
) -> None:
    from steelfast.training.fit import fit_folder, training_folder
    from steelfast.training.gated import GatedTrainConfig
    from steelfast.training.mix import SynthMix
    from steelfast.training.pseudo import PseudoLabels, check_rule

    config = GatedTrainConfig(seed=seed, threads=threads, device=device, amp=amp, area_weight=area_weight)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            setattr(config, name, value)
    config.validate()  # every option is checked before any file is read
    shares = _prevalence_option(prevalence)  # None: the Kaggle train set's rates, as fit_folder's default
    if area_weight > 0:  # before the images are read: the areas come from the presence table
        from steelfast.data.real import read_presence

        if presence is None or "area_class_1" not in read_presence(presence).columns:
            raise ValueError(f"--area-weight needs a --presence table with pixel areas (columns area_class_1..4), "
                             f"got {'no --presence' if presence is None else str(presence)}")
    if pseudo_options is not None:
        folder, negative, positive = pseudo_options
        negative, positive = check_rule(negative, positive)
    mix = None
    if synth is not None:
        ratio, shapes, sheets, gate = synth
        mix = SynthMix.from_labels(ratio, shapes, sheets=sheets, gate=gate)  # checks ratio and sheets before reading
    pseudo = None
    if pseudo_options is not None:
        training_folder(data_dir)  # a bad training folder fails before the unlabelled images are read
        pseudo = PseudoLabels.from_folder(folder, negative=negative, positive=positive)
    try:
        # One line per epoch, with or without progress bars (the gated trainer draws none).
        path, cv = fit_folder(data_dir, out, presence=presence, folds=folds, config=config, progress=typer.echo,
                              command="steelfast " + " ".join(sys.argv[1:]), mix=mix, pseudo=pseudo,
                              prevalence=shares)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: no model written to {out} (the gated trainer has no resume; run it again)", err=True)
        raise typer.Exit(code=130) from None
    s = cv.summary()
    typer.echo(f"CV score {s['score_mean']:.4f} ± {s['score_std']:.4f} (all-empty {s['all_empty_mean']:.4f}); "
               f"report: {out / 'report.txt'} and {out / 'report.png'}")
    typer.echo(f"checkpoint: {path}")


@app.command("evaluate")
@domain_errors
def evaluate_cmd(
    images: Path = typer.Option(..., "--images", help="Folder of labelled images."),
    labels: Path = typer.Option(..., "--labels", help="Label CSV (either Kaggle format); unlisted images are defect-free."),
    model: Optional[Path] = typer.Option(None, "--model", help="Checkpoint, ONNX file or bundled model name (default: the bundled default model)."),
    overlays: Optional[Path] = typer.Option(None, "--overlays", help="Write side-by-side truth/prediction PNGs here."),
    output: Optional[list[Path]] = typer.Option(
        None, "-o", "--output",
        help="Also write the result, by suffix: .json (the table, scores and failures), .csv (one row per image "
        "and class: truth, prediction, Dice) or .png (a chart of the table); written atomically; repeatable.",
    ),
    prevalence: Optional[str] = typer.Option(
        None, "--prevalence",
        help="Share of images holding each class where the model will run, four numbers such as "
        "0.07,0.02,0.41,0.06, for the score expected there (default: the Kaggle train set's).",
    ),
    backend: str = typer.Option("auto", "--backend", help="auto, torch, onnxruntime or tensorrt."),
    tta: Optional[bool] = typer.Option(None, "--tta/--no-tta", help="Flip TTA (default: as the checkpoint says)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Score a model on labelled images: per-class Dice on defects, false positives on clean pairs,
    image-level precision and recall, and the Kaggle score next to the all-empty score."""
    from steelfast.analysis.evaluate import check_save_path, evaluate_folder, format_report

    shares = _prevalence_option(prevalence)
    for k, path in enumerate(output or ()):  # before any image is segmented
        check_save_path(path)
        if path.exists() and labels.exists() and path.resolve() == labels.resolve():
            raise ValueError(f"-o {path} is the --labels file: give another output name")
        if path in output[:k]:  # type: ignore[index]
            raise ValueError(f"-o {path} is given twice")
    with reported_here("steelfast.inference.pipeline"):  # the failures are listed below, once
        result = evaluate_folder(images, labels, model, overlays=overlays, progress=progress, backend=backend, tta=tta)
    typer.echo(format_report(result.report))
    typer.echo(f"Kaggle score {result.score:.4f} (all-empty {result.all_empty:.4f}, "
               f"{result.score - result.all_empty:+.4f}) over {len(result.pairs) // 4} images")
    typer.echo(_expected_line(result.expected_score(shares), given=prevalence is not None))
    if result.failures:
        typer.echo(f"{len(result.failures)} images failed: " + "; ".join(f"{k}: {v}" for k, v in result.failures.items()), err=True)
    if result.unmatched:
        first = ", ".join(result.unmatched[:3]) + (", ..." if len(result.unmatched) > 3 else "")
        typer.echo(f"note: {len(result.unmatched)} labelled images are not in {images} and were not scored: {first}",
                   err=True)
    for path in output or ():
        typer.echo(f"wrote {result.save(path, shares)}")


def _prevalence_option(text: Optional[str]) -> tuple[float, ...]:
    """``--prevalence``, checked (None: the Kaggle train set's rates); the error names the option."""
    from steelfast._validate import check_prevalence
    from steelfast.severstal import PREVALENCE

    try:
        return check_prevalence(text, len(PREVALENCE))
    except ValueError as e:  # the message speaks of "prevalence"
        raise ValueError(f"--prevalence: {e}") from None


def _expected_line(est: dict[str, Any], given: bool) -> str:
    rates = "/".join(f"{p:.3f}" for p in est["prevalence"])
    where = f"at the class rates {rates}" if given else f"at the Kaggle train set's class rates ({rates})"
    if est["score"] is None:
        missing = ", ".join(str(c) for c in est["missing"])
        return (f"expected {where}: not estimable, no defect (or no clean image) of class {missing} among "
                f"these images (all-empty {est['all_empty']:.4f})")
    return (f"expected {where}: {est['score']:.4f} (all-empty {est['all_empty']:.4f}, "
            f"{est['score'] - est['all_empty']:+.4f})")
