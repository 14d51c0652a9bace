"""Inference commands: ``steelfast export`` (ONNX, TensorRT) and ``steelfast segment`` (also
``steelfast-segment``).

In: command-line arguments. Out: an ONNX file (and engine), or a submission / defect-record file,
with failures and notes on stderr and a summary line. The library modules these call import torch
(and the optional runtimes), so they are imported when a command runs.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Optional

import typer

from steelfast.cli.app import (
    app,
    domain_errors,
    given_options,
    quiet_info,
    refuse_options,
    reported_here,
    version_option,
)

__all__ = ["export", "segment"]

#: What Ray Data warns of once when a run turns its progress bars off, as ``--no-progress`` asked.
RAY_PROGRESS_OFF = ("Progress bars disabled.",)


@app.command()
@domain_errors
def export(
    ctx: typer.Context,
    checkpoint: Optional[Path] = typer.Argument(
        None, metavar="CHECKPOINT", help="Checkpoint (.safetensors or .json); default: the shipped model."
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
        None, "--cache-dir",
        help="TensorRT engine cache folder (default: $STEELFAST_CACHE/tensorrt, else "
        "$XDG_CACHE_HOME/steelfast/tensorrt, else ~/.cache/steelfast/tensorrt)."
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
    from steelfast._validate import check_choice, check_positive_int
    from steelfast.inference.backends.tensorrt_plan import HARDWARE_COMPATIBILITY
    from steelfast.inference.export import export_onnx
    from steelfast.model_files import resolve_model

    engine_options = given_options(ctx, ("max_batch", "cache_dir", "hardware_compatibility", "version_compatible"))
    if engine_options and not tensorrt:
        raise ValueError(f"{', '.join(engine_options)} set{'s' if len(engine_options) == 1 else ''} up the TensorRT "
                         "engine: add --tensorrt")
    # Checked before the ONNX file is written.
    check_positive_int("--max-batch", max_batch)
    check_choice("--hardware-compatibility", hardware_compatibility, HARDWARE_COMPATIBILITY)

    path = export_onnx(resolve_model(checkpoint), onnx, opset=opset, precision=precision)
    typer.echo(f"wrote {path}")
    if tensorrt:
        from steelfast.inference.backends.tensorrt_engine import build_tensorrt_engine

        engine = build_tensorrt_engine(
            path, cache_dir=cache_dir, batch=(1, min(8, max_batch), max_batch),
            hardware_compatibility=hardware_compatibility, version_compatible=version_compatible,
        )
        typer.echo(f"TensorRT engine: {engine}")


@app.command()
@domain_errors
def segment(
    ctx: typer.Context,
    input_dir: Path = typer.Argument(..., metavar="INPUT_DIR", help="Folder of images (.jpg, .png, ...) to segment."),
    output: Path = typer.Option(
        Path("submission.csv"), "-o", "--output",
        help="Output file (.csv, .xlsx, .parquet; .jsonl or .json for defect records), written atomically."
    ),
    model: Optional[Path] = typer.Option(
        None, "--model",
        help="Checkpoint (.safetensors/.json), ONNX file or bundled model name (synthetic-unet); default: the "
        "shipped model."
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
    workers: int = typer.Option(2, "--workers", help="--engine local: image decoding threads."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    engine: str = typer.Option(
        "local", "--engine", help="local (this process) or ray (Ray Data actors; csv or parquet output)."
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="--engine ray: the cluster to join (default: start Ray on this machine)."
    ),
    concurrency: int = typer.Option(1, "--concurrency", help="--engine ray: model actors."),
    num_gpus: float = typer.Option(0.0, "--num-gpus", help="--engine ray: GPUs per actor."),
    version: bool = version_option(),
) -> None:
    """Segment a folder of steel images into a Kaggle submission file (or defect records)."""
    from steelfast._validate import check_choice, check_positive_int
    from steelfast.inference.backends import resolve_backend
    from steelfast.inference.decode import OTHER_SIZES
    from steelfast.inference.run import segment_to_file
    from steelfast.inference.writer import journal_path
    from steelfast.model_files import resolve_model

    resolve_backend(backend)  # an unknown name fails before any work
    if engine not in ("local", "ray"):
        raise ValueError(f"--engine must be local or ray, got {engine!r}")
    refuse_options(ctx, ("ray_address", "concurrency", "num_gpus") if engine == "local" else ("workers",),
                   f"--engine {'ray' if engine == 'local' else 'local'}", f"--engine {engine}")
    # The values, checked here under their flags' names: the library's messages name its parameters
    # (batch_size, ...), and it takes a workers count below 1 as 1.
    for flag, value in (("--workers", workers), ("--concurrency", concurrency), ("--max-pixels", max_pixels)) + (
            (("--batch-size", batch_size),) if batch_size is not None else ()):
        check_positive_int(flag, value)
    check_choice("--other-sizes", other_sizes, OTHER_SIZES)
    if num_gpus < 0:
        raise ValueError(f"--num-gpus must be >= 0, got {num_gpus}")
    if engine == "ray":
        _segment_with_ray(input_dir, output, resolve_model(model), fmt=fmt, overwrite=overwrite, resume=resume,
                          overlays=overlays, other_sizes=other_sizes, max_pixels=max_pixels, backend=backend,
                          batch_size=batch_size, tta=tta, ray_address=ray_address, concurrency=concurrency,
                          num_gpus=num_gpus, progress=progress)
        return
    try:
        with reported_here("steelfast.inference.pipeline"):  # _report lists each failure and note once
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
    """Failures and notes on stderr, the summary line; exit code 1 when every image failed."""
    for name, message in summary.failures.items():
        typer.echo(f"failed: {name}: {message}", err=True)
    for name, note in summary.notes.items():
        typer.echo(f"warning: {name}: {note}", err=True)
    typer.echo(summary.line())
    if summary.images == 0 and summary.failures:
        typer.echo(f"error: none of the {len(summary.failures)} images could be segmented "
                   f"({summary.output} holds no image)", err=True)
        raise typer.Exit(code=1)


def _segment_with_ray(input_dir: Path, output: Path, model: Path, *, resume: bool, overlays: Optional[Path],
                      **options: Any) -> None:
    """``--engine ray``: the same submission through :func:`steelfast.segment_with_ray`. With
    ``--no-progress`` this command's Ray runtime logs warnings and errors only, not its INFO lines."""
    from steelfast.inference.decode import list_folder
    from steelfast.inference.ray_engine import check_ray_output, import_ray, segment_with_ray

    if resume or overlays is not None:
        raise ValueError("--engine ray writes a submission in one go: --resume and --overlays need --engine local")
    fmt, tta = options.pop("fmt"), options.pop("tta")
    ray = import_ray()
    # What fails without Ray fails before it starts (segment_with_ray checks both again).
    check_ray_output(output, fmt, overwrite=options["overwrite"])
    list_folder(input_dir)
    started = not ray.is_initialized()
    quiet = not options["progress"]
    try:
        if started:  # this process is the command's own, so it sets the level of Ray's driver loggers
            ray.init(address=options["ray_address"], include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING if quiet else logging.INFO)
        with reported_here("steelfast.inference.ray_engine"), \
                quiet_info("ray.data", drop=RAY_PROGRESS_OFF) if quiet else contextlib.nullcontext():
            # (_report lists each failure once)
            summary = segment_with_ray(input_dir, model, output=output, format=fmt,
                                       **({"tta": tta} if tta is not None else {}), **options)
    finally:
        if started:  # the runtime this command started (a cluster it joined stays up)
            ray.shutdown()
    _report(summary)
