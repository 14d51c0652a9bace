"""The EDA report: tables, plots and one HTML page for a labels table, written into a folder.

In: a labels frame or file, and the images of the set (a list or a folder). Out: the files below,
from the tables of :mod:`steelfast.analysis.eda` and the figures of
:mod:`steelfast.analysis.eda_plots`.

Everything is computed from a per-image area table (:func:`~steelfast.analysis.eda.area_table`: defect pixels per image and
class, read from the RLE run lengths without decoding), over **all** images of the set, the
defect-free ones included (they have no rows in the new-format train.csv, so pass the image list).

:func:`eda_report` writes, into one folder::

    defect_counts.csv / .png            images per class, absolute and relative
    classes_per_image.csv / .png        number of defect classes per image
    area_fraction_stats.csv / .md       describe() of defect pixels / image pixels, per class, all images
    area_fraction_present.csv / .md     the same over the images that have the class
    reference.csv / .md                 the set next to the real Kaggle train statistics
    area_fraction_hist.png              log-scale histograms of the area fractions
    samples.png                         a grid of overlays (when an image folder is given; an image that
                                        cannot be read is left out with a warning)
    report.html                         all of the above on one page

Plots use :class:`matplotlib.figure.Figure` directly (Agg canvas), never pyplot's global state.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from steelfast._io import PathLike, atomic_save_png, atomic_write_bytes
from steelfast._validate import check_int
from steelfast.analysis.eda import (
    area_fraction_stats,
    area_table,
    classes_per_image,
    defect_counts,
    reference_table,
    to_markdown,
)
from steelfast.analysis.eda_plots import (
    class_hex_colors,
    plot_area_histograms,
    plot_classes_per_image,
    plot_defect_counts,
    plot_samples,
)
from steelfast.images import list_images
from steelfast.labels import read_labels
from steelfast.severstal import CLASSES, SHAPE

__all__ = ["eda_report"]

log = logging.getLogger(__name__)


def _pick_samples(areas: pd.DataFrame, available: set[str], n: int, seed: int) -> list[str]:
    """Up to ``n`` defective images found in the folder, round-robin over the classes."""
    rng = np.random.default_rng(seed)
    pools = []
    for c in CLASSES:
        ids = [i for i in areas.index[areas[c] > 0] if i in available]
        pools.append(list(rng.permutation(ids)) if ids else [])
    out: list[str] = []
    while len(out) < n and any(pools):
        for pool in pools:
            while pool and pool[0] in out:
                pool.pop(0)
            if pool and len(out) < n:
                out.append(pool.pop(0))
    return out


# ---------------------------------------------------------------------------------------------
# report

_STYLE = (
    "<style>body{font-family:sans-serif;margin:2em;max-width:1700px}"
    "table.t{border-collapse:collapse}"
    "table.t td,table.t th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "img{max-width:100%}</style></head><body>"
)


def _write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def eda_report(
    labels: pd.DataFrame | PathLike,
    out_dir: PathLike,
    *,
    image_ids: Sequence[str] | None = None,
    images_dir: PathLike | None = None,
    n_samples: int = 6,
    shape: tuple[int, int] = SHAPE,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write the EDA files and ``report.html`` (see the module docstring).

    Args:
        labels: Labels frame or file (read with :func:`steelfast.labels.read_labels`).
        out_dir: Output folder (created).
        image_ids: All images of the set. By default: the images in ``images_dir`` plus those named
            in ``labels``.
        images_dir: Image folder, for the sample overlays (skipped when None).
        n_samples: Number of sample overlays (0 = none).
        shape: Image (H, W).
        seed: Seed of the sample choice.
        progress: Show progress bars.

    Returns:
        Path: ``out_dir / "report.html"``.

    Images of ``image_ids`` / ``images_dir`` that have no row in ``labels`` are counted as
    defect-free (the new-format train.csv lists defects only); when there are any, a warning is
    logged and the report says so next to its summary.

    Raises:
        FileNotFoundError: missing labels file or image folder.
        TypeError: ``n_samples`` is not an int.
        ValueError: inconsistent labels and image list, ``n_samples`` < 0.
    """
    n_samples = check_int("n_samples", n_samples, low=0)
    frame = labels if isinstance(labels, pd.DataFrame) else read_labels(labels)
    folder_ids: list[str] = []
    if images_dir is not None:
        folder_ids = [p.name for p in list_images(images_dir)]
    source = "image list" if image_ids is not None else "image folder"
    if image_ids is None:
        image_ids = list(dict.fromkeys(folder_ids + frame["ImageId"].astype(str).tolist()))
    labelled = set(frame["ImageId"].astype(str))
    rowless = sum(1 for iid in dict.fromkeys(map(str, image_ids)) if iid not in labelled)
    assumption = ""
    if rowless:
        assumption = (
            f"{rowless} of {len(set(map(str, image_ids)))} images (from the {source}) have no "
            "rows in the labels and are assumed defect-free, as in the new-format train.csv "
            "that lists defects only; if they are unlabelled rather than clean, leave them out."
        )
        log.warning("EDA: %s", assumption)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    areas = area_table(frame, image_ids, shape)
    counts = defect_counts(areas)
    per = classes_per_image(areas)
    stats = area_fraction_stats(areas, shape)
    stats_present = area_fraction_stats(areas, shape, present_only=True)
    ref = reference_table(areas, shape)
    tables = {
        "defect_counts": counts,
        "classes_per_image": per,
        "area_fraction_stats": stats,
        "area_fraction_present": stats_present,
        "reference": ref,
    }
    for name, df in tables.items():
        _write_text(out / f"{name}.csv", df.to_csv(lineterminator="\n"))
        _write_text(out / f"{name}.md", to_markdown(df))

    figs = {
        "defect_counts": plot_defect_counts(counts),
        "classes_per_image": plot_classes_per_image(per),
        "area_fraction_hist": plot_area_histograms(areas, shape),
    }
    samples: list[str] = []
    if images_dir is not None and n_samples > 0:
        samples = _pick_samples(areas, set(folder_ids), int(n_samples), seed)
        if samples:
            # plot_samples leaves out (with a warning) an image it cannot read or whose runs do not fit its size
            fig = plot_samples(images_dir, frame, samples, progress=progress)
            if any(ax.images for ax in fig.axes):
                figs["samples"] = fig
    for name, fig in figs.items():
        atomic_save_png(fig, out / f"{name}.png", dpi=100)

    def table_html(df: pd.DataFrame) -> str:
        return df.to_html(float_format=lambda v: format(v, ".6g"), na_rep="", border=0, classes="t")

    n_img = len(areas)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>steelfast EDA</title>",
        _STYLE,
        "<h1>Steel defect labels: exploratory analysis</h1>",
        (
            f"<p>{n_img} images, {int(counts['images'].sum())} (image, class) defects, "
            f"{int(per.loc[0, 'images'])} defect-free images. Image size {shape[1]}x{shape[0]}.</p>"
        ),
        f"<p class='note'><b>Note:</b> {html.escape(assumption)}</p>" if assumption else "",
        "<h2>Defects per class</h2>",
        table_html(counts),
        "<img src='defect_counts.png' alt='defects per class'>",
        "<h2>Defect classes per image</h2>",
        table_html(per),
        "<img src='classes_per_image.png' alt='classes per image'>",
        "<h2>Area fraction per class, all images</h2>",
        (
            "<p>defect pixels / image pixels; images without the class count as 0. "
            "(<a href='area_fraction_stats.csv'>CSV</a>, "
            "<a href='area_fraction_stats.md'>Markdown</a>)</p>"
        ),
        table_html(stats),
        "<h2>Area fraction per class, images with the class</h2>",
        table_html(stats_present),
        "<img src='area_fraction_hist.png' alt='area fraction histograms'>",
        "<h2>Compared with the real Kaggle train set (12,568 images)</h2>",
        table_html(ref),
    ]
    if "samples" in figs:
        parts += [
            "<h2>Samples</h2>",
            "<p>"
            + ", ".join(
                f"<span style='color:{c};font-weight:bold'>class {k}</span>"
                for k, c in zip(CLASSES, class_hex_colors())
            )
            + "</p>",
            "<img src='samples.png' alt='sample overlays'>",
        ]
    parts.append(
        f"<p><small>images: {html.escape(str(images_dir)) if images_dir else 'not given'}</small></p>"
    )
    parts.append("</body></html>\n")
    report = out / "report.html"
    _write_text(report, "\n".join(parts))
    return report
