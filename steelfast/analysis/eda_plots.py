"""EDA plots: the tables of :mod:`steelfast.analysis.eda` and sample overlays as figures.

In: the area and count tables (and, for samples, an image folder and labels). Out:
:class:`matplotlib.figure.Figure` objects, drawn on an Agg canvas without pyplot's global state
(matplotlib is imported only when a figure is made).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from steelfast._io import PathLike
from steelfast.analysis.overlay import CLASS_COLORS, draw_overlay
from steelfast.images import read_gray
from steelfast.labels import build_masks
from steelfast.rle import RLEError, failed_item
from steelfast.severstal import CLASSES, SHAPE

__all__ = [
    "class_hex_colors",
    "plot_area_histograms",
    "plot_classes_per_image",
    "plot_defect_counts",
    "plot_samples",
]

log = logging.getLogger(__name__)


def _figure(w: float, h: float):  # -> matplotlib.figure.Figure
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def class_hex_colors() -> list[str]:
    """The overlay colour of each class (1..4) as ``"#rrggbb"``."""
    return ["#{:02x}{:02x}{:02x}".format(*CLASS_COLORS[c]) for c in CLASSES]


def plot_defect_counts(counts: pd.DataFrame):
    """Bar chart of images per class, absolute (left) and % of images (right).

    Args:
        counts: From :func:`~steelfast.analysis.eda.defect_counts`.

    Returns:
        matplotlib.figure.Figure
    """
    fig = _figure(10, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    labels = [str(c) for c in counts.index]
    colors = class_hex_colors()
    for ax, col, title in (
        (ax1, "images", "images with the class"),
        (ax2, "pct_of_images", "% of images"),
    ):
        bars = ax.bar(
            labels, counts[col].to_numpy(), color=colors, edgecolor="black", linewidth=0.5
        )
        ax.bar_label(bars, fmt="%d" if col == "images" else "%.1f%%", fontsize=8)
        ax.set_xlabel("ClassId")
        ax.set_title(title)
        ax.margins(y=0.15)
    return fig


def plot_classes_per_image(per: pd.DataFrame):
    """Bar chart of the number of defect classes per image.

    Args:
        per: From :func:`~steelfast.analysis.eda.classes_per_image`.

    Returns:
        matplotlib.figure.Figure
    """
    fig = _figure(5.5, 3.6)
    ax = fig.subplots()
    bars = ax.bar(
        [str(i) for i in per.index],
        per["images"].to_numpy(),
        color="#3b528b",
        edgecolor="black",
        linewidth=0.5,
    )
    ax.bar_label(
        bars,
        labels=[f"{n}\n{p:.1f}%" for n, p in zip(per["images"], per["pct_of_images"])],
        fontsize=8,
    )
    ax.set_xlabel("defect classes in the image")
    ax.set_ylabel("images")
    ax.margins(y=0.25)
    return fig


def plot_area_histograms(areas: pd.DataFrame, shape: tuple[int, int] = SHAPE, bins: int = 30):
    """Histograms of the area fraction per class on a log x axis (images with the class only).

    Args:
        areas: From :func:`~steelfast.analysis.eda.area_table`.
        shape: Image (H, W).
        bins: Number of log-spaced bins.

    Returns:
        matplotlib.figure.Figure
    """
    npix = float(shape[0] * shape[1])
    fig = _figure(12, 6)
    axes = fig.subplots(2, 2).ravel()
    colors = class_hex_colors()
    for ax, c, color in zip(axes, CLASSES, colors):
        frac = areas[c].to_numpy()[areas[c].to_numpy() > 0] / npix
        if frac.size:
            lo, hi = np.log10(frac.min()), np.log10(frac.max())
            edges = np.logspace(lo, hi if hi > lo else lo + 1e-3, bins + 1)
            ax.hist(frac, bins=edges, color=color, edgecolor="black", linewidth=0.4)
        else:
            ax.text(0.5, 0.5, "no defects", ha="center", va="center", transform=ax.transAxes)
        ax.set_xscale("log")
        ax.set_title(f"class {c} (n = {frac.size})")
        ax.set_xlabel("area fraction (defect pixels / image pixels)")
        ax.set_ylabel("images")
    return fig


def _load_sample(path: Path, labels: pd.DataFrame, iid: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The image and its masks, or None (with a warning naming the file and why) when it cannot be drawn."""
    try:
        gray = read_gray(path)
    except (OSError, ValueError) as exc:
        log.warning("EDA: sample skipped: %s", exc)
        return None
    try:
        return gray, build_masks(labels, iid, gray.shape)
    except RLEError as exc:
        item = failed_item(exc)  # build_masks decodes the classes as one batch, item i = class i + 1
        reason = f"class {item[0] + 1}: {item[1]}" if item else str(exc)
        log.warning("EDA: sample skipped: %s is %dx%d, and its label runs do not fit that size (%s)",
                    path, gray.shape[1], gray.shape[0], reason)
        return None


def plot_samples(
    images_dir: PathLike,
    labels: pd.DataFrame,
    image_ids: Sequence[str],
    *,
    progress: bool = False,
):
    """A column of overlays (see :func:`steelfast.analysis.overlay.draw_overlay`) of the given images.

    An image that cannot be read, or whose label runs do not fit its size, is left out with a warning (logged on
    this module's logger) naming the file and the reason.

    Args:
        images_dir: Folder with the images.
        labels: Labels frame.
        image_ids: Images to show, top to bottom.
        progress: Show a tqdm progress bar.

    Returns:
        matplotlib.figure.Figure: with no image drawn when none of ``image_ids`` could be.
    """
    samples = []
    for iid in tqdm(list(image_ids), desc="overlays", disable=not progress):
        loaded = _load_sample(Path(images_dir) / iid, labels, iid)
        if loaded is not None:
            gray, masks = loaded
            present = [str(c + 1) for c in range(4) if masks[c].any()]
            samples.append((iid, draw_overlay(gray, masks), present))
    fig = _figure(16, 2.0 * max(len(samples), 1) + 0.4)
    axes = np.atleast_1d(fig.subplots(max(len(samples), 1), 1))
    for ax, (iid, overlay, present) in zip(axes, samples):
        ax.imshow(overlay, interpolation="antialiased")
        ax.set_title(f"{iid}  classes: {', '.join(present) or 'none'}", fontsize=9, loc="left")
    for ax in axes:
        ax.set_axis_off()
    return fig
