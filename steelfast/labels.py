"""Kaggle Severstal label files: reading either format into one tidy table, writing submissions, building masks.

Two formats exist:

* old: ``ImageId_ClassId,EncodedPixels``, four rows per image (``"0002cc93b.jpg_1"``), empty cells for no defect;
* new: ``ImageId,ClassId,EncodedPixels`` (any column order), usually defect rows only.

:func:`read_labels` returns both as columns ``ImageId`` (str), ``ClassId`` (int64, 1..4), ``EncodedPixels``
(str, ``""`` for no defect) and ``hasMask`` (bool), sorted by image and class, after validating every row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steelfast._atomic import atomic_path
from steelfast._compiled import core
from steelfast._validate import as_shape
from steelfast.rle import DEFAULT_SHAPE, RLEError, decode_batch

__all__ = ["CLASS_IDS", "LabelError", "build_masks", "read_labels", "write_submission"]

CLASS_IDS: tuple[int, ...] = (1, 2, 3, 4)
_COLUMNS = ["ImageId", "ClassId", "EncodedPixels", "hasMask"]
_FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".parquet": "parquet"}
_EXCEL_CELL_LIMIT = 32767


class LabelError(ValueError):
    """A label file or table is malformed; the message names the file, line and value."""


def _where(name: str, from_file: bool, row: int) -> str:
    # Line numbers count the header as line 1, as an editor shows them.
    return f"{name}, line {row + 2}" if from_file else f"{name}, row {row}"


def _load(source: Any) -> tuple[pd.DataFrame, str, bool]:
    if isinstance(source, pd.DataFrame):
        return source.copy(), "<DataFrame>", False
    if isinstance(source, (str, PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"label file not found: {path}")
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise LabelError(f"{path}: not a readable CSV ({exc})") from None
        return frame, str(path), True
    raise TypeError(f"labels must be a DataFrame or a CSV path, got {type(source).__name__}")


def _split_old(frame: pd.DataFrame, name: str, from_file: bool) -> pd.DataFrame:
    keys = frame["ImageId_ClassId"].astype(str)
    parts = keys.str.rsplit("_", n=1, expand=True)
    if parts.shape[1] != 2 or parts[1].isna().any():
        bad = int(np.flatnonzero(parts[1].isna() if parts.shape[1] == 2 else np.ones(len(keys), bool))[0])
        raise LabelError(f"{_where(name, from_file, bad)}: ImageId_ClassId {keys.iloc[bad]!r} has no '_<class>' suffix")
    return pd.DataFrame({"ImageId": parts[0], "ClassId": parts[1], "EncodedPixels": frame["EncodedPixels"]})


def _check_rle(texts: list[str], total: int, name: str, from_file: bool) -> None:
    try:
        core.areas_many(texts, total, 0)
    except RLEError as exc:
        match = re.match(r"item (\d+): (.*)", str(exc), re.S)
        if not match:
            raise
        row = int(match.group(1))
        shown = texts[row] if len(texts[row]) <= 60 else texts[row][:60] + "..."
        raise LabelError(f"{_where(name, from_file, row)}: malformed EncodedPixels {shown!r}: {match.group(2)}") from None


def read_labels(
    source: pd.DataFrame | str | PathLike, images: Iterable[str] | None = None, shape: tuple[int, int] = DEFAULT_SHAPE
) -> pd.DataFrame:
    """Read a label file or table in either Kaggle format into one tidy, validated table.

    Args:
        source: CSV path or DataFrame, old or new format.
        images: the full image set; (image, class) pairs missing from the file are added as empty rows so that
            every image has four rows. Needed for the new format, which omits defect-free images.
        shape: (H, W) the RLE refers to (validation checks runs against H*W).

    Returns:
        DataFrame with columns ImageId, ClassId (int64), EncodedPixels (str), hasMask (bool), sorted.

    Raises:
        LabelError: missing columns, a class id outside 1..4, a duplicate (ImageId, ClassId), or malformed RLE;
            the message names the file, line and value.
        FileNotFoundError: the path does not exist.
    """
    height, width = as_shape(shape)
    frame, name, from_file = _load(source)
    columns = set(frame.columns)
    if {"ImageId_ClassId", "EncodedPixels"} <= columns:
        frame = _split_old(frame, name, from_file)
    elif {"ImageId", "ClassId", "EncodedPixels"} <= columns:
        frame = frame[["ImageId", "ClassId", "EncodedPixels"]].copy()
    else:
        raise LabelError(
            f"{name}: expected columns ImageId,ClassId,EncodedPixels (new format) or ImageId_ClassId,EncodedPixels "
            f"(old format), got {list(frame.columns)}"
        )
    frame["ImageId"] = frame["ImageId"].astype(str)
    pixels = frame["EncodedPixels"]
    frame["EncodedPixels"] = pixels.where(pixels.notna(), "").astype(str)
    class_ids = pd.to_numeric(frame["ClassId"].astype(str), errors="coerce")
    bad = ~class_ids.isin(CLASS_IDS)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise LabelError(f"{_where(name, from_file, row)}: ClassId {str(frame['ClassId'].iloc[row])!r} is not one of 1, 2, 3, 4")
    frame["ClassId"] = class_ids.astype(np.int64)
    duplicated = frame.duplicated(["ImageId", "ClassId"], keep=False).to_numpy()
    if duplicated.any():
        rows = np.flatnonzero(duplicated)
        first = frame.iloc[rows[0]]
        same = rows[(frame["ImageId"].iloc[rows] == first["ImageId"]).to_numpy() & (frame["ClassId"].iloc[rows] == first["ClassId"]).to_numpy()]
        lines = ", ".join(_where(name, from_file, int(r)).rsplit(", ", 1)[1] for r in same[:3])
        raise LabelError(f"{name}: duplicate (ImageId, ClassId) = ({first['ImageId']!r}, {first['ClassId']}) at {lines}")
    _check_rle(frame["EncodedPixels"].tolist(), height * width, name, from_file)
    if images is not None:
        grid = pd.MultiIndex.from_product([sorted({str(i) for i in images} | set(frame["ImageId"])), list(CLASS_IDS)],
                                          names=["ImageId", "ClassId"])
        frame = frame.set_index(["ImageId", "ClassId"]).reindex(grid, fill_value="").reset_index()
    frame["hasMask"] = frame["EncodedPixels"] != ""
    return frame.sort_values(["ImageId", "ClassId"], kind="stable").reset_index(drop=True)[_COLUMNS]


def write_submission(
    frame: pd.DataFrame,
    path: str | PathLike,
    format: str | None = None,
    style: str = "new",
    drop_empty: bool = False,
) -> Path:
    """Write labels or predictions atomically as CSV, Excel or Parquet.

    Args:
        frame: DataFrame with ImageId, ClassId, EncodedPixels (e.g. from ``segment_folder`` or ``read_labels``).
        path: output path; its suffix picks the format unless ``format`` is given.
        format: "csv", "xlsx" or "parquet".
        style: "new" (``ImageId,ClassId,EncodedPixels``) or "old" (``ImageId_ClassId,EncodedPixels``).
        drop_empty: keep only defect rows (the layout of Kaggle's train.csv).

    Returns:
        The path written.
    """
    target = Path(path)
    kind = format or _FORMATS.get(target.suffix.lower())
    if kind not in ("csv", "xlsx", "parquet"):
        raise ValueError(f"unknown output format for {target}: use a .csv, .xlsx or .parquet suffix or format=, got {format!r}")
    if style not in ("new", "old"):
        raise ValueError(f"style must be 'new' or 'old', got {style!r}")
    missing = {"ImageId", "ClassId", "EncodedPixels"} - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks column(s) {sorted(missing)}; it has {list(frame.columns)}")
    table = frame[["ImageId", "ClassId", "EncodedPixels"]].copy()
    table["EncodedPixels"] = table["EncodedPixels"].fillna("").astype(str)
    if drop_empty:
        table = table[table["EncodedPixels"] != ""]
    if style == "old":
        table = pd.DataFrame({"ImageId_ClassId": table["ImageId"].astype(str) + "_" + table["ClassId"].astype(str),
                              "EncodedPixels": table["EncodedPixels"]})
    with atomic_path(target) as tmp:
        if kind == "csv":
            table.to_csv(tmp, index=False)
        elif kind == "xlsx":
            longest = int(table["EncodedPixels"].str.len().max()) if len(table) else 0
            if longest > _EXCEL_CELL_LIMIT:
                raise ValueError(
                    f"an EncodedPixels value has {longest} characters, more than an Excel cell holds "
                    f"({_EXCEL_CELL_LIMIT}); write .csv or .parquet instead"
                )
            _need("openpyxl", "excel")
            table.to_excel(tmp, index=False, engine="openpyxl")
        else:
            _need("pyarrow", "parquet")
            table.to_parquet(tmp, index=False)
    return target


def _need(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ImportError(f"writing this format needs {module}: pip install 'steelfast[{extra}]'") from None


def build_masks(labels: pd.DataFrame, image_id: str, shape: tuple[int, int] = DEFAULT_SHAPE) -> np.ndarray:
    """Decode the four class masks of one image.

    Args:
        labels: table from :func:`read_labels`.
        image_id: e.g. ``"0002cc93b.jpg"``; an image without rows (defect-free in the new format) gives zeros.
        shape: (H, W).

    Returns:
        uint8 array (4, H, W), channel c holding ClassId c + 1.
    """
    rows = labels.loc[labels["ImageId"] == image_id, ["ClassId", "EncodedPixels"]]
    texts = [""] * len(CLASS_IDS)
    for class_id, text in zip(rows["ClassId"].tolist(), rows["EncodedPixels"].tolist()):
        texts[int(class_id) - 1] = text
    return decode_batch(texts, shape, threads=1)
