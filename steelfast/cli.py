"""Command-line interface: ``steelfast`` (sub-commands), ``steelfast-segment`` and ``steelfast-train``.

The CLI only parses arguments, calls the library and prints. A domain error (a ``ValueError``
for a bad value, an ``OSError`` for a bad path, an ``ImportError`` for a missing extra, or
:class:`~steelfast.inference.errors.BackendUnavailableError`) becomes a one-line message on stderr
and exit code 1, never a traceback; anything else is a bug and keeps its traceback. Ctrl-C ends a
command with one line that says how to continue, and exit code 130.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import typer

from steelfast.inference.errors import BackendUnavailableError

__all__ = ["app", "main", "segment_main", "train_main"]

app = typer.Typer(
    name="steelfast",
    help="Fast surface-defect segmentation for steel sheets (Severstal layout).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., object])

#: What the library raises for bad input, bad paths, missing extras and unusable backends. A
#: ``TypeError`` or a plain ``RuntimeError`` is a bug and keeps its traceback (``typer.Exit``, a
#: ``RuntimeError`` too, passes through).
DOMAIN_ERRORS = (ValueError, OSError, ImportError, BackendUnavailableError)


def domain_errors(func: F) -> F:
    """Turn domain exceptions into a one-line error and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except DOMAIN_ERRORS as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


# ---- section: data (synth, eda, overlay) ------------------------------------------------------


@app.command("synth")
@domain_errors
def synth_cmd(
    out: Path = typer.Argument(..., help="Output folder; gets train_images/, test_images/, train.csv, ..."),
    train: int = typer.Option(800, "--train", help="Number of training images."),
    test: int = typer.Option(100, "--test", help="Number of test images."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed writes identical files."),
    quality: int = typer.Option(90, "--quality", help="JPEG quality, 1..100."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dataset already in OUT."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Write a synthetic Severstal-like dataset in the Kaggle layout."""
    from steelfast.data.synth import make_dataset

    path = make_dataset(out, train, test, seed, progress, quality=quality, overwrite=overwrite)
    typer.echo(f"wrote {train} train and {test} test images to {path}")


@contextlib.contextmanager
def _echo_warnings(logger: str) -> Iterator[None]:
    """Print the warnings ``logger`` logs meanwhile as ``note: ...`` lines on stderr."""

    class Echo(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            typer.echo(f"note: {record.getMessage()}", err=True)

    handler = Echo(logging.WARNING)
    log = logging.getLogger(logger)
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)


@app.command("eda")
@domain_errors
def eda_cmd(
    labels: Path = typer.Argument(..., help="Labels CSV (Kaggle train.csv, old or new format)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Image folder, for the sample overlays."),
    out: Path = typer.Option(Path("eda"), "--out", help="Output folder for the tables, plots and report.html."),
    image_list: Optional[Path] = typer.Option(
        None,
        "--image-list",
        help="All images of the set (CSV with an ImageId column, or one name a line); "
        "default: the images in --images plus those in LABELS.",
    ),
    samples: int = typer.Option(6, "--samples", help="Number of sample overlays (0 = none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample choice."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Exploratory analysis of a labels file: counts, area statistics, plots and report.html."""
    from steelfast.eda import eda_report, read_image_list

    ids = read_image_list(image_list) if image_list is not None else None
    with _echo_warnings("steelfast.eda"):  # e.g. images assumed defect-free
        report = eda_report(
            labels, out, image_ids=ids, images_dir=images, n_samples=samples, seed=seed, progress=progress
        )
    typer.echo(f"report: {report}")


@app.command("overlay")
@domain_errors
def overlay_cmd(
    image: Path = typer.Argument(..., help="Image file; its name is the ImageId looked up in the tables."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Truth: labels CSV (train.csv format)."),
    pred: Optional[Path] = typer.Option(None, "--pred", help="Prediction: submission CSV."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output PNG; default <image stem>_overlay.png here."),
    alpha: float = typer.Option(0.35, "--alpha", help="Opacity of the mask shading, 0..1."),
) -> None:
    """Draw an image with its true and/or predicted masks (viridis class colours) as a PNG."""
    from steelfast.overlay import overlay_file

    target = out if out is not None else Path(f"{image.stem}_overlay.png")
    path = overlay_file(image, target, labels=labels, pred=pred, alpha=alpha)
    typer.echo(f"wrote {path}")


# ---- end section: data ------------------------------------------------------------------------

# ---- section: model (train) -------------------------------------------------------------------

#: U-Net training defaults: the fast configuration behind the README's quality figures
#: (``bench/train_quality.py --lr 3e-3 --lr-schedule cosine --crop-width 256 --batch-size 16``);
#: the benchmark's budget stops it, so ``epochs`` is the CLI's own.
UNET_FAST: dict[str, Any] = {
    "epochs": 30, "batch_size": 16, "lr": 3e-3, "crop_width": 256, "lr_schedule": "cosine"
}


@app.command()
@domain_errors
def train(
    data_dir: Path = typer.Argument(..., help="Kaggle-layout folder with train.csv and train_images/."),
    out: Path = typer.Option(..., "--out", help="Run folder for best.*, last.*, history.csv and history.png."),
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
        help="Train on defective images only (the baseline) or on all; validation always uses all.",
    ),
    class_balance: float = typer.Option(
        0.0, "--class-balance",
        help="Draw rare classes more often: 0 = each image once per epoch, 0.5 = square-root, 1 = equal.",
    ),
    lr_schedule: str = typer.Option(
        UNET_FAST["lr_schedule"], "--lr-schedule", help="unet: constant or cosine (decay to zero)."
    ),
    dice_mode: str = typer.Option("global", "--dice-mode", help="Soft Dice pooling of the loss: global, class or pair."),
    val_fraction: float = typer.Option(0.15, "--val-fraction", help="Share of images held out for validation."),
    flips: bool = typer.Option(False, "--flips/--no-flips", help="Random horizontal and vertical flips."),
    seed: int = typer.Option(0, "--seed", help="Seed of split, weights, order and augmentations."),
    in_channels: int = typer.Option(3, "--channels", help="Input channels of the model (grey replicated)."),
    amp: str = typer.Option(
        "auto", "--amp",
        help="Autocast: auto (fp16 on CUDA; bf16 on CPUs with native bf16, where it pays, else off), "
        "bf16, fp16 or off.",
    ),
    channels_last: bool = typer.Option(
        True, "--channels-last/--no-channels-last", help="Channels-last memory format (faster on CPU)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: all cores)."),
    workers: int = typer.Option(0, "--workers", help="DataLoader worker processes."),
    time_budget: Optional[float] = typer.Option(
        None, "--time-budget", help="Stop training after this many seconds, leaving time to validate."
    ),
    tune: bool = typer.Option(
        True, "--tune/--no-tune", help="Tune per-class threshold and minimum area on the validation set."
    ),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue from a checkpoint (e.g. RUN/last.safetensors) and its .state.pt."
    ),
    max_train_images: Optional[int] = typer.Option(
        None, "--max-train-images", help="Use only the first N training images (quick runs)."
    ),
    max_val_images: Optional[int] = typer.Option(
        None, "--max-val-images", help="Use only the first N validation images (quick runs)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    arch: str = typer.Option(
        "unet", "--arch",
        help="unet (the baseline U-Net, trained from scratch) or gated-effnet-lite0 (ImageNet "
        "EfficientNet-Lite0 U-Net with a per-class gate tuned by k-fold CV; needs steelfast[pretrained]).",
    ),
    presence: Optional[Path] = typer.Option(
        None, "--presence",
        help="gated-effnet-lite0: CSV of weakly labelled images (ImageId + area_class_1..4 or class_1..4).",
    ),
    folds: int = typer.Option(5, "--folds", help="gated-effnet-lite0: folds of the CV that tunes the gate."),
) -> None:
    """Train a model: the U-Net (validated and tuned every epoch, one line per epoch), or the gated
    EfficientNet U-Net (k-fold CV, gate and post-processing tuned out of fold, then a final model on
    all images). The U-Net defaults are the fast configuration of bench/train_quality.py."""
    if arch == "gated-effnet-lite0":
        _train_gated(data_dir, out, presence, folds, epochs, batch_size, lr, seed, threads, device)
        return
    if arch != "unet":
        raise ValueError(f"--arch must be unet or gated-effnet-lite0, got {arch!r}")
    from steelfast.training.config import TrainConfig
    from steelfast.training.loop import train as run_training

    config = TrainConfig(
        # "is None", not "or": an explicit --epochs 0 must reach the validation, not the default.
        epochs=UNET_FAST["epochs"] if epochs is None else epochs,
        batch_size=UNET_FAST["batch_size"] if batch_size is None else batch_size,
        lr=UNET_FAST["lr"] if lr is None else lr, crop_width=crop_width or None,
        only_defects=only_defects, class_balance=class_balance, lr_schedule=lr_schedule, dice_mode=dice_mode,
        val_fraction=val_fraction, flips=flips, seed=seed,
        architecture={**TrainConfig().architecture, "in_channels": in_channels}, amp=amp,
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

# ---- end section: model -----------------------------------------------------------------------

def _train_gated(
    data_dir: Path, out: Path, presence: Optional[Path], folds: int, epochs: Optional[int],
    batch_size: Optional[int], lr: Optional[float], seed: int, threads: Optional[int], device: str,
) -> None:
    from steelfast.training.fit import fit_folder
    from steelfast.training.gated import GatedTrainConfig

    config = GatedTrainConfig(seed=seed, threads=threads, device=device)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            setattr(config, name, value)
    try:
        # One line per epoch, with or without progress bars (the gated trainer draws none).
        path, cv = fit_folder(data_dir, out, presence=presence, folds=folds, config=config, progress=typer.echo,
                              command="steelfast " + " ".join(sys.argv[1:]))
    except KeyboardInterrupt:
        typer.echo(f"interrupted: no model written to {out} (the gated trainer has no resume; run it again)", err=True)
        raise typer.Exit(code=130) from None
    s = cv.summary()
    typer.echo(f"CV score {s['score_mean']:.4f} ± {s['score_std']:.4f} (all-empty {s['all_empty_mean']:.4f}); "
               f"report: {out / 'report.txt'}")
    typer.echo(f"checkpoint: {path}")


@app.command("evaluate")
@domain_errors
def evaluate_cmd(
    images: Path = typer.Option(..., "--images", help="Folder of labelled images."),
    labels: Path = typer.Option(..., "--labels", help="Label CSV (either Kaggle format); unlisted images are defect-free."),
    model: Optional[Path] = typer.Option(None, "--model", help="Checkpoint or ONNX file (default: the bundled model)."),
    overlays: Optional[Path] = typer.Option(None, "--overlays", help="Write side-by-side truth/prediction PNGs here."),
    backend: str = typer.Option("auto", "--backend", help="auto, torch, onnxruntime or tensorrt."),
    tta: Optional[bool] = typer.Option(None, "--tta/--no-tta", help="Flip TTA (default: as the checkpoint says)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Score a model on labelled images: per-class Dice on defects, false positives on clean pairs,
    image-level precision and recall, and the Kaggle score next to the all-empty score."""
    from steelfast.evaluate import evaluate_folder, format_report

    result = evaluate_folder(images, labels, model, overlays=overlays, progress=progress, backend=backend, tta=tta)
    typer.echo(format_report(result.report))
    typer.echo(f"Kaggle score {result.score:.4f} (all-empty {result.all_empty:.4f}, "
               f"{result.score - result.all_empty:+.4f}) over {len(result.pairs) // 4} images")
    if result.failures:
        typer.echo(f"{len(result.failures)} images failed: " + "; ".join(f"{k}: {v}" for k, v in result.failures.items()), err=True)


# ---- section: inference (export, segment) -----------------------------------------------------


@app.command()
@domain_errors
def export(
    checkpoint: Optional[Path] = typer.Argument(
        None, help="Checkpoint (.safetensors or .json); default: the shipped model."
    ),
    onnx: Path = typer.Option(..., "--onnx", help="Output ONNX file (dynamic batch, probabilities output)."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset version (>= 17)."),
    precision: str = typer.Option(
        "fp32", "--precision",
        help="ONNX precision: fp32, or fp16 (float16 weights and activations, float32 input, float16 output; "
        "what TensorRT 11 builds FP16 engines from).",
    ),
    tensorrt: bool = typer.Option(
        False, "--tensorrt/--no-tensorrt",
        help="Also build (or find cached) an FP16 TensorRT engine (TensorRT 10 or 11); needs a GPU.",
    ),
    max_batch: int = typer.Option(32, "--max-batch", help="Largest batch of the TensorRT optimization profile."),
    cache_dir: Optional[Path] = typer.Option(
        None, "--cache-dir", help="TensorRT engine cache folder (default ~/.cache/steelfast/tensorrt)."
    ),
    hardware_compatibility: str = typer.Option(
        "none", "--hardware-compatibility",
        help="TensorRT engine for other GPUs: none, ampere_plus or same_compute_capability (slower).",
    ),
    version_compatible: bool = typer.Option(
        False, "--version-compatible/--no-version-compatible",
        help="TensorRT engine that later TensorRT versions and the lean runtime can run (slower).",
    ),
) -> None:
    """Export a checkpoint to ONNX (and optionally a cached TensorRT engine)."""
    from steelfast.export import export_onnx
    from steelfast.segment import resolve_model

    path = export_onnx(resolve_model(checkpoint), onnx, opset=opset, precision=precision)
    typer.echo(f"wrote {path}")
    if tensorrt:
        from steelfast.tensorrt_engine import build_tensorrt_engine

        engine = build_tensorrt_engine(
            path, cache_dir=cache_dir, batch=(1, min(8, max_batch), max_batch),
            hardware_compatibility=hardware_compatibility, version_compatible=version_compatible,
        )
        typer.echo(f"TensorRT engine: {engine}")


@app.command()
@domain_errors
def segment(
    input_dir: Path = typer.Argument(..., help="Folder of images (.jpg, .png, ...) to segment."),
    output: Path = typer.Option(
        Path("submission.csv"), "-o", "--output",
        help="Output file (.csv, .xlsx, .parquet; .jsonl or .json for defect records), written atomically."
    ),
    model: Optional[Path] = typer.Option(
        None, "--model", help="Checkpoint (.safetensors/.json) or ONNX file; default: the shipped model."
    ),
    backend: str = typer.Option("auto", "--backend", help="auto, torch, onnxruntime or tensorrt."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="Images per forward pass (default: 1 on CPU, 8 on GPU)."
    ),
    fmt: Optional[str] = typer.Option(
        None, "--format",
        help="csv, xlsx or parquet (submission rows), json (JSON Lines defect records) or coco (COCO defect "
        "records); default: from the output suffix (.csv, .xlsx, .parquet, .jsonl, .json).",
    ),
    overlays: Optional[Path] = typer.Option(None, "--overlays", help="Folder for PNG overlays of the predicted masks."),
    tta: Optional[bool] = typer.Option(
        None, "--tta/--no-tta",
        help="Flip test-time augmentation (3 passes: image, h-flip, v-flip); default: as the checkpoint was tuned.",
    ),
    resume: bool = typer.Option(
        False, "--resume",
        help="Continue an interrupted run: keep the images already done (same model and options only).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    other_sizes: str = typer.Option(
        "skip", "--other-sizes",
        help="Images not 256x1600: skip (listed as failures) or resize (to 256x1600 for the model; masks at 256x1600).",
    ),
    max_pixels: int = typer.Option(
        50_000_000, "--max-pixels", help="Refuse images of more pixels than this (checked from the header)."
    ),
    workers: int = typer.Option(2, "--workers", help="Image decoding threads."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    engine: str = typer.Option(
        "local", "--engine", help="local (this process) or ray (Ray Data actors; csv or parquet output)."
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="--engine ray: the cluster to join (default: start Ray on this machine)."
    ),
    concurrency: int = typer.Option(1, "--concurrency", help="--engine ray: model actors."),
    num_gpus: float = typer.Option(0.0, "--num-gpus", help="--engine ray: GPUs per actor."),
) -> None:
    """Segment a folder of steel images into a Kaggle submission file (or defect records)."""
    from steelfast.backends import resolve_backend
    from steelfast.inference.writer import journal_path
    from steelfast.segment import resolve_model, segment_to_file

    resolve_backend(backend)  # an unknown name fails before any work
    if engine not in ("local", "ray"):
        raise ValueError(f"--engine must be local or ray, got {engine!r}")
    if engine == "ray":
        _segment_with_ray(input_dir, output, resolve_model(model), fmt=fmt, overwrite=overwrite, resume=resume,
                          overlays=overlays, other_sizes=other_sizes, max_pixels=max_pixels, backend=backend,
                          batch_size=batch_size, tta=tta, ray_address=ray_address, concurrency=concurrency,
                          num_gpus=num_gpus)
        return
    try:
        summary = segment_to_file(
            input_dir, output, resolve_model(model), format=fmt, resume=resume, overwrite=overwrite,
            overlays=overlays, progress=progress, workers=workers, other_sizes=other_sizes,
            max_pixels=max_pixels, backend=backend, batch_size=batch_size, tta=tta,
        )
    except KeyboardInterrupt:
        journal = journal_path(output)
        hint = f": finished images are kept in {journal}; run the same command with --resume to continue"
        typer.echo(f"interrupted{hint if journal.is_file() else ''}", err=True)
        raise typer.Exit(code=130) from None
    _report(summary)


def _report(summary: Any) -> None:
    for name, message in summary.failures.items():
        typer.echo(f"failed: {name}: {message}", err=True)
    for name, note in summary.notes.items():
        typer.echo(f"warning: {name}: {note}", err=True)
    typer.echo(summary.line())


def _segment_with_ray(input_dir: Path, output: Path, model: Path, *, resume: bool, overlays: Optional[Path],
                      **options: Any) -> None:
    """``--engine ray``: the same submission through :func:`steelfast.segment_with_ray`."""
    from steelfast.inference.ray_engine import import_ray, segment_with_ray

    if resume or overlays is not None:
        raise ValueError("--engine ray writes a submission in one go: --resume and --overlays need --engine local")
    fmt, tta = options.pop("fmt"), options.pop("tta")
    ray = import_ray()
    started = not ray.is_initialized()
    try:
        summary = segment_with_ray(input_dir, model, output=output, format=fmt,
                                   **({"tta": tta} if tta is not None else {}), **options)
    finally:
        if started:  # the runtime this command started (a cluster it joined stays up)
            ray.shutdown()
    _report(summary)

# ---- end section: inference -------------------------------------------------------------------


def main() -> None:
    """Entry point of ``steelfast``."""
    app()


def segment_main() -> None:
    """Entry point of ``steelfast-segment`` (the same as ``steelfast segment``)."""
    typer.run(segment)  # noqa: F821 - defined in the inference section


def train_main() -> None:
    """Entry point of ``steelfast-train`` (the same as ``steelfast train``)."""
    typer.run(train)  # noqa: F821 - defined in the model section
