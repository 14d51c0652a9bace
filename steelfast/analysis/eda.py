"""EDA tables: per-image defect areas and the counts and statistics read from them.

In: a labels frame (ImageId, ClassId, EncodedPixels) and the list of all images of the set. Out:
pandas tables: the per-image area table (:func:`area_table`: defect pixels per image and class,
read from the RLE run lengths without decoding), images per class, classes per image, area-fraction
statistics and a comparison with the real Kaggle train set, plus :func:`to_markdown` to print them.

Every statistic is over **all** images of the set, the defect-free ones included (they have no
rows in the new-format train.csv, so pass the image list).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from steelfast import rle
from steelfast.labels import defect_rows
from steelfast.severstal import CLASSES, REAL_STATS, SHAPE

__all__ = [
    "area_fraction_stats",
    "area_table",
    "classes_per_image",
    "defect_counts",
    "reference_table",
    "to_markdown",
]


def area_table(
    labels: pd.DataFrame,
    image_ids: Sequence[str] | None = None,
    shape: tuple[int, int] = SHAPE,
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
    areas: pd.DataFrame, shape: tuple[int, int] = SHAPE, *, present_only: bool = False
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


def reference_table(areas: pd.DataFrame, shape: tuple[int, int] = SHAPE) -> pd.DataFrame:
    """This set next to the real Kaggle train set (:data:`steelfast.severstal.REAL_STATS`).

    Returns:
        DataFrame: index ``class 1..4`` and ``defect-free``; columns ``pct_of_images``,
        ``real_pct_of_images``, ``mean_area_fraction``, ``real_mean_area_fraction``.
    """
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
