"""Data commands: ``steelfast synth``, ``steelfast eda`` and ``steelfast overlay``.

In: command-line arguments. Out: a synthetic dataset folder, an EDA report folder or an overlay PNG,
and one line saying where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from steelfast.analysis import eda_plots as eda_plots_module
from steelfast.analysis import eda_report as eda_report_module
from steelfast.analysis.eda_report import eda_report
from steelfast.analysis.overlay import overlay_file
from steelfast.cli.app import app, domain_errors, echo_warnings
from steelfast.data.synth import make_dataset
from steelfast.labels import read_image_list

__all__ = ["eda_cmd", "overlay_cmd", "synth_cmd"]


@app.command("synth")
@domain_errors
def synth_cmd(
    out: Path = typer.Argument(
        ..., metavar="OUT", help="Output folder; gets train_images/, test_images/, train.csv, ..."
    ),
    train: int = typer.Option(800, "--train", help="Number of training images."),
    test: int = typer.Option(100, "--test", help="Number of test images."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed writes identical files."),
    quality: int = typer.Option(90, "--quality", help="JPEG quality, 1..100."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dataset already in OUT."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Write a synthetic Severstal-like dataset in the Kaggle layout."""
    path = make_dataset(out, train, test, seed, progress, quality=quality, overwrite=overwrite)
    typer.echo(f"wrote {train} train and {test} test images to {path}")


@app.command("eda")
@domain_errors
def eda_cmd(
    labels: Path = typer.Argument(
        ..., metavar="LABELS", help="Labels CSV (Kaggle train.csv, old or new format)."
    ),
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
    ids = read_image_list(image_list) if image_list is not None else None
    # e.g. images assumed defect-free, sample images that cannot be drawn
    with echo_warnings(eda_report_module.__name__), echo_warnings(eda_plots_module.__name__):
        report = eda_report(
            labels, out, image_ids=ids, images_dir=images, n_samples=samples, seed=seed, progress=progress
        )
    typer.echo(f"report: {report}")


@app.command("overlay")
@domain_errors
def overlay_cmd(
    image: Path = typer.Argument(
        ..., metavar="IMAGE", help="Image file; its name is the ImageId looked up in the tables."
    ),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Truth: labels CSV (train.csv format)."),
    pred: Optional[Path] = typer.Option(None, "--pred", help="Prediction: submission CSV."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output PNG; default <image stem>_overlay.png here."),
    alpha: float = typer.Option(0.35, "--alpha", help="Opacity of the mask shading, 0..1."),
) -> None:
    """Draw an image with its true and/or predicted masks (viridis class colours) as a PNG."""
    target = out if out is not None else Path(f"{image.stem}_overlay.png")
    path = overlay_file(image, target, labels=labels, pred=pred, alpha=alpha)
    typer.echo(f"wrote {path}")
