"""Exploratory data analysis of a labels table: counts, area statistics, plots and an HTML report.

Everything is computed from a per-image area table (:func:`area_table`: defect pixels per image and
class, read from the RLE run lengths without decoding), over **all** images of the set, the
defect-free ones included (they have no rows in the new-format train.csv, so pass the image list).

:func:`eda_report` writes, into one folder::

    defect_counts.csv / .png            images per class, absolute and relative
    classes_per_image.csv / .png        number of defect classes per image
    area_fraction_stats.csv / .md       describe() of defect pixels / image pixels, per class, all images
    area_fraction_present.csv / .md     the same over the images that have the class
    reference.csv / .md                 the set next to the real Kaggle train statistics
    area_fraction_hist.png              log-scale histograms of the area fractions
    samples.png                         a grid of overlays (when an image folder is given)
    report.html                         all of the above on one page

Plots use :class:`matplotlib.figure.Figure` directly (Agg canvas), never pyplot's global state.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from steelfast._io import atomic_path, atomic_write_bytes

__all__ = [
    "area_fraction_stats",
    "area_table",
    "classes_per_image",
    "defect_counts",
    "defect_rows",
    "eda_report",
    "plot_area_histograms",
    "plot_classes_per_image",
    "plot_defect_counts",
    "plot_samples",
    "read_image_list",
    "reference_table",
    "to_markdown",
]

PathLike = Union[str, "os.PathLike[str]"]
CLASSES = (1, 2, 3, 4)
log = logging.getLogger(__name__)
_LABEL_COLUMNS = ("ImageId", "ClassId", "EncodedPixels")


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def defect_rows(labels: pd.DataFrame) -> pd.DataFrame:
    """The defect rows of a labels frame, validated.

    Args:
        labels: Frame with ImageId, ClassId, EncodedPixels (e.g. from
            :func:`steelfast.labels.read_labels`); rows with an empty EncodedPixels are dropped.

    Returns:
        DataFrame: ImageId (str), ClassId (int 1..4), EncodedPixels (non-empty str).

    Raises:
        TypeError: ``labels`` is not a DataFrame.
        ValueError: a missing column or a ClassId outside 1..4 (quoting the value and image).
    """
    if not isinstance(labels, pd.DataFrame):
        raise TypeError(
            f"labels must be a DataFrame from steelfast.labels.read_labels, got {type(labels).__name__}"
        )
    missing = [c for c in _LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise ValueError(f"labels lack columns {missing}; got columns {list(labels.columns)}")
    enc = labels["EncodedPixels"].fillna("").astype(str).str.strip()
    rows = labels.loc[enc != "", ["ImageId", "ClassId"]].assign(EncodedPixels=enc[enc != ""])
    cls = pd.to_numeric(rows["ClassId"], errors="coerce")
    bad = ~cls.isin([1, 2, 3, 4])
    if bad.any():
        i = bad.to_numpy().nonzero()[0][0]
        raise ValueError(
            f"ClassId must be 1..4, got {rows['ClassId'].iloc[i]} for {rows['ImageId'].iloc[i]!r}"
        )
    return rows.assign(ImageId=rows["ImageId"].astype(str), ClassId=cls.astype(int))


def read_image_list(path: PathLike) -> list[str]:
    """Read an image list: a CSV with an ``ImageId`` column, or a text file with one name a line.

    Args:
        path: e.g. ``train_partial_images.csv``.

    Returns:
        list[str]: The image ids in file order.

    Raises:
        FileNotFoundError: missing file.
        ValueError: a CSV without an ``ImageId`` column.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image list not found: {p}")
    if p.suffix.lower() == ".csv":
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
        if "ImageId" not in df.columns:
            raise ValueError(f"{p} has no ImageId column; got columns {list(df.columns)}")
        return df["ImageId"].tolist()
    return [line.strip() for line in p.read_text().splitlines() if line.strip()]


def area_table(
    labels: pd.DataFrame,
    image_ids: Sequence[str] | None = None,
    shape: tuple[int, int] = (256, 1600),
) -> pd.DataFrame:
    """Defect pixels per image and class.

    Args:
        labels: Labels frame (ImageId, ClassId, EncodedPixels; empty EncodedPixels = no defect),
            e.g. from :func:`steelfast.labels.read_labels`.
        image_ids: All images of the set; by default the images named in ``labels`` (which misses
            the defect-free images of a new-format train.csv).
        shape: Image (H, W) the RLE refers to (runs are checked against H*W).

    Returns:
        DataFrame: index ImageId (in ``image_ids`` order), int64 columns 1, 2, 3, 4 (pixel counts).

    Raises:
        ValueError: missing columns, a ClassId outside 1..4, labels of images not in ``image_ids``.
    """
    from steelfast import rle

    rows = defect_rows(labels)
    if image_ids is None:
        ids = list(dict.fromkeys(labels["ImageId"].astype(str)))
    else:
        ids = list(dict.fromkeys(str(i) for i in image_ids))
    pos = {iid: k for k, iid in enumerate(ids)}
    unknown = sorted(set(rows["ImageId"]) - pos.keys())
    if unknown:
        raise ValueError(
            f"labels name {len(unknown)} images that are not in the image list, e.g. {unknown[:3]}"
        )
    areas = np.zeros((len(ids), 4), dtype=np.int64)
    if len(rows):
        px = rle.area_batch(
            rows["EncodedPixels"].tolist(), shape
        )  # validated run lengths, no decoding
        r = np.array([pos[i] for i in rows["ImageId"]], dtype=np.int64)
        np.add.at(areas, (r, rows["ClassId"].to_numpy() - 1), px)
    return pd.DataFrame(areas, index=pd.Index(ids, name="ImageId"), columns=list(CLASSES))


def defect_counts(areas: pd.DataFrame) -> pd.DataFrame:
    """Images with each class, absolute and relative.

    Args:
        areas: From :func:`area_table`.

    Returns:
        DataFrame: index ClassId 1..4; columns ``images`` (int), ``pct_of_images`` (share of all
        images, %), ``pct_of_defects`` (share of all (image, class) defects, %).
    """
    has = (areas[list(CLASSES)] > 0).sum(axis=0).astype(np.int64)
    n = max(len(areas), 1)
    total = max(int(has.sum()), 1)
    out = pd.DataFrame(
        {
            "images": has.to_numpy(),
            "pct_of_images": 100.0 * has.to_numpy() / n,
            "pct_of_defects": 100.0 * has.to_numpy() / total,
        },
        index=pd.Index(list(CLASSES), name="ClassId"),
    )
    return out


def classes_per_image(areas: pd.DataFrame) -> pd.DataFrame:
    """How many images have 0, 1, 2, 3, 4 defect classes.

    Returns:
        DataFrame: index n_classes 0..4; columns ``images`` (int) and ``pct_of_images`` (%).
    """
    k = (areas[list(CLASSES)] > 0).sum(axis=1).to_numpy()
    counts = np.bincount(k, minlength=5)[:5]
    n = max(len(areas), 1)
    return pd.DataFrame(
        {"images": counts.astype(np.int64), "pct_of_images": 100.0 * counts / n},
        index=pd.Index(range(5), name="n_classes"),
    )


def area_fraction_stats(
    areas: pd.DataFrame, shape: tuple[int, int] = (256, 1600), *, present_only: bool = False
) -> pd.DataFrame:
    """pandas ``describe()`` of the area fraction (defect pixels / image pixels) per class.

    Args:
        areas: From :func:`area_table`.
        shape: Image (H, W), for the number of pixels.
        present_only: Describe only the images that have the class (default: all images, zeros
            included).

    Returns:
        DataFrame: index ClassId 1..4; columns count, mean, std, min, 25%, 50%, 75%, max (floats).
    """
    frac = areas[list(CLASSES)].astype(np.float64) / float(shape[0] * shape[1])
    cols = []
    for c in CLASSES:
        s = frac[c]
        cols.append((s[s > 0] if present_only else s).describe())
    out = pd.DataFrame(cols, index=pd.Index(list(CLASSES), name="ClassId"))
    return out.astype(np.float64)


def reference_table(areas: pd.DataFrame, shape: tuple[int, int] = (256, 1600)) -> pd.DataFrame:
    """This set next to the real Kaggle train set (:data:`steelfast.severstal.REAL_STATS`).

    Returns:
        DataFrame: index ``class 1..4`` and ``defect-free``; columns ``pct_of_images``,
        ``real_pct_of_images``, ``mean_area_fraction``, ``real_mean_area_fraction``.
    """
    from steelfast.severstal import REAL_STATS

    counts = defect_counts(areas)
    per = classes_per_image(areas)
    mean_frac = area_fraction_stats(areas, shape)["mean"]
    presence = REAL_STATS["presence"]  # type: ignore[index]
    real_frac = REAL_STATS["mean_area_fraction"]  # type: ignore[index]
    rows = {
        f"class {c}": [
            counts.loc[c, "pct_of_images"],
            100.0 * presence[c],
            mean_frac[c],
            real_frac[c],
        ]
        for c in CLASSES
    }
    real_free = 100.0 * REAL_STATS["classes_per_image"][0]  # type: ignore[index]
    rows["defect-free"] = [per.loc[0, "pct_of_images"], real_free, np.nan, np.nan]
    return pd.DataFrame.from_dict(
        rows,
        orient="index",
        columns=[
            "pct_of_images",
            "real_pct_of_images",
            "mean_area_fraction",
            "real_mean_area_fraction",
        ],
    )


def to_markdown(df: pd.DataFrame, floatfmt: str = ".6g") -> str:
    """A GitHub-flavoured Markdown table (no extra dependency).

    Args:
        df: Any frame; the index becomes the first column.
        floatfmt: Format of float cells.

    Returns:
        str: The table, ending in a newline.
    """

    def cell(v: object) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else format(float(v), floatfmt)
        return str(v)

    head = [str(df.index.name or "")] + [str(c) for c in df.columns]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(df.columns)) + "|",
    ]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([cell(idx)] + [cell(v) for v in row.to_numpy()]) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# plots (matplotlib.figure.Figure, no pyplot)


def _figure(w: float, h: float):  # -> matplotlib.figure.Figure
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def _class_colors() -> list[str]:
    from steelfast.overlay import CLASS_COLORS

    return [_hex(CLASS_COLORS[c]) for c in CLASSES]


def plot_defect_counts(counts: pd.DataFrame):
    """Bar chart of images per class, absolute (left) and % of images (right).

    Args:
        counts: From :func:`defect_counts`.

    Returns:
        matplotlib.figure.Figure
    """
    fig = _figure(10, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    labels = [str(c) for c in counts.index]
    colors = _class_colors()
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
        per: From :func:`classes_per_image`.

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


def plot_area_histograms(areas: pd.DataFrame, shape: tuple[int, int] = (256, 1600), bins: int = 30):
    """Histograms of the area fraction per class on a log x axis (images with the class only).

    Args:
        areas: From :func:`area_table`.
        shape: Image (H, W).
        bins: Number of log-spaced bins.

    Returns:
        matplotlib.figure.Figure
    """
    npix = float(shape[0] * shape[1])
    fig = _figure(12, 6)
    axes = fig.subplots(2, 2).ravel()
    colors = _class_colors()
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


def plot_samples(
    images_dir: PathLike,
    labels: pd.DataFrame,
    image_ids: Sequence[str],
    *,
    progress: bool = False,
):
    """A column of overlays (see :func:`steelfast.overlay.draw_overlay`) of the given images.

    Args:
        images_dir: Folder with the images.
        labels: Labels frame.
        image_ids: Images to show, top to bottom.
        progress: Show a tqdm progress bar.

    Returns:
        matplotlib.figure.Figure
    """
    from tqdm.auto import tqdm

    from steelfast.images import read_gray
    from steelfast.labels import build_masks
    from steelfast.overlay import draw_overlay

    ids = list(image_ids)
    fig = _figure(16, 2.0 * max(len(ids), 1) + 0.4)
    axes = np.atleast_1d(fig.subplots(max(len(ids), 1), 1))
    for ax, iid in zip(axes, tqdm(ids, desc="overlays", disable=not progress)):
        gray = read_gray(Path(images_dir) / iid)
        masks = build_masks(labels, iid, gray.shape)
        ax.imshow(draw_overlay(gray, masks), interpolation="antialiased")
        present = [str(c + 1) for c in range(4) if masks[c].any()]
        ax.set_title(f"{iid}  classes: {', '.join(present) or 'none'}", fontsize=9, loc="left")
        ax.set_axis_off()
    for ax in axes[len(ids) :]:
        ax.set_axis_off()
    return fig


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


def _save_fig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def eda_report(
    labels: pd.DataFrame | PathLike,
    out_dir: PathLike,
    *,
    image_ids: Sequence[str] | None = None,
    images_dir: PathLike | None = None,
    n_samples: int = 6,
    shape: tuple[int, int] = (256, 1600),
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
        ValueError: inconsistent labels and image list.
    """
    from steelfast.images import list_images
    from steelfast.labels import read_labels

    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 0:
        raise ValueError(f"n_samples must be an int >= 0, got {n_samples!r}")
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
            figs["samples"] = plot_samples(images_dir, frame, samples, progress=progress)
    for name, fig in figs.items():
        _save_fig(fig, out / f"{name}.png")

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
                for k, c in zip(CLASSES, _class_colors())
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
