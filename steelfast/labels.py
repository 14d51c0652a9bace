"""Kaggle Severstal label files: reading either format into one tidy table, writing submissions, building masks.

Two formats exist:

* old: ``ImageId_ClassId,EncodedPixels``, four rows per image (``"0002cc93b.jpg_1"``), empty cells for no defect;
* new: ``ImageId,ClassId,EncodedPixels`` (any column order), usually defect rows only.

:func:`read_labels` returns both as columns ``ImageId`` (str), ``ClassId`` (int64, 1..4), ``EncodedPixels``
(str, ``""`` for no defect) and ``hasMask`` (bool), sorted by image and class, after validating every row.
:func:`defect_rows` checks any labels frame and keeps its defect rows; :func:`read_image_list` reads the list of
all images of a set (the defect-free ones included, which a new-format train.csv leaves out).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steelfast._compiled import core
from steelfast._io import atomic_path
from steelfast._validate import as_shape
from steelfast.rle import RLEError, decode_batch, failed_item
from steelfast.severstal import CLASSES, SHAPE

__all__ = [
    "LabelError",
    "build_masks",
    "defect_rows",
    "read_image_list",
    "read_labels",
    "write_submission",
]

_COLUMNS = ["ImageId", "ClassId", "EncodedPixels", "hasMask"]
_TABLE_COLUMNS = ("ImageId", "ClassId", "EncodedPixels")
_FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".parquet": "parquet"}
_EXCEL_CELL_LIMIT = 32767
# Characters an .xlsx cell cannot hold exactly: XML 1.0 forbids most controls (openpyxl refuses them), its parsers
# turn CR into LF, and lone surrogates and U+FFFE/U+FFFF have no place in XML text.
_XLSX_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff]")


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
        # header=None: every line, the header included, must have the header's field count, so a row with an extra
        # field is an error naming its line (with header=0, pandas would silently make the first column the index).
        try:
            table = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
        except pd.errors.ParserError as exc:
            fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
            if fields is None:
                raise LabelError(f"{path}: not a readable CSV ({exc})") from None
            expected, line, saw = fields.groups()
            raise LabelError(
                f"{path}, line {line}: {saw} fields, but the header has {expected} (a value with an unquoted comma, "
                "or a trailing comma?)"
            ) from None
        except (UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise LabelError(f"{path}: not a readable CSV ({exc})") from None
        short = _short_row(path, table.shape[1])
        if short is not None:
            line, saw = short
            raise LabelError(
                f"{path}, line {line}: {saw} field{'s' if saw != 1 else ''}, but the header has {table.shape[1]} (a missing "
                "field? an empty value still needs its comma)"
            )
        frame = table.iloc[1:].reset_index(drop=True)
        frame.columns = table.iloc[0].tolist()
        return frame, str(path), True
    raise TypeError(f"labels must be a DataFrame or a CSV path, got {type(source).__name__}")


def _short_row(path: Path, expected: int) -> tuple[int, int] | None:
    """``(line, fields)`` of the first record with fewer fields than the header, or None.

    pandas' parser pads such a row with empty values, so that ``a.jpg,1`` would pass for a
    defect-free row. Here pandas reads the file again as raw lines (compressed files too, and no
    field-size limit), and each record's commas outside quotes are counted; a quoted field may span
    lines, and the line named is the record's last. Blank lines, which pandas skips, are skipped.
    """
    try:
        lines = pd.read_csv(path, header=None, sep="\x01", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False,
                            skip_blank_lines=False)[0]
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise LabelError(f"{path}: not a readable CSV ({exc})") from None
    inside, fields = False, 1
    for number, line in enumerate(lines.tolist(), 1):
        if not inside and not line.strip():
            continue
        parts = line.split('"')
        for k, part in enumerate(parts):
            if not inside:
                fields += part.count(",")
            if k < len(parts) - 1:
                inside = not inside
        if inside:  # the record goes on: the newline was inside a quoted field
            continue
        if fields < expected:
            return number, fields
        fields = 1
    return None


def _check_columns(columns: list, name: str) -> None:
    repeated = sorted({str(c) for c in columns if columns.count(c) > 1})
    if repeated:
        raise LabelError(f"{name}: column(s) {repeated} appear more than once in {columns}")
    both = [c for c in ("ImageId", "ClassId") if c in columns]
    if "ImageId_ClassId" in columns and both:
        raise LabelError(
            f"{name}: has both the old format's ImageId_ClassId column and the new format's {both}, so which ids to "
            f"use is ambiguous; keep one format's columns, got {columns}"
        )


def _check_image_ids(ids: pd.Series, name: str, from_file: bool, keys: pd.Series | None = None) -> None:
    # `keys`: the old format's ImageId_ClassId values the ids were split from, quoted instead of the bare id.
    empty = (ids.isna() | (ids.astype(str).str.strip() == "")).to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        where = _where(name, from_file, row)
        if keys is None:
            raise LabelError(f"{where}: ImageId is empty ({ids.iloc[row]!r})")
        raise LabelError(f"{where}: ImageId_ClassId {keys.iloc[row]!r} has an empty ImageId")


def _split_old(frame: pd.DataFrame, name: str, from_file: bool) -> pd.DataFrame:
    keys = frame["ImageId_ClassId"].astype(str)
    if len(keys) == 0:  # a header-only file: rsplit would give no columns at all
        return pd.DataFrame({"ImageId": keys, "ClassId": keys, "EncodedPixels": frame["EncodedPixels"]})
    parts = keys.str.rsplit("_", n=1, expand=True)
    if parts.shape[1] != 2 or parts[1].isna().any():
        bad = int(np.flatnonzero(parts[1].isna() if parts.shape[1] == 2 else np.ones(len(keys), bool))[0])
        raise LabelError(f"{_where(name, from_file, bad)}: ImageId_ClassId {keys.iloc[bad]!r} has no '_<class>' suffix")
    _check_image_ids(parts[0], name, from_file, keys)
    return pd.DataFrame({"ImageId": parts[0], "ClassId": parts[1], "EncodedPixels": frame["EncodedPixels"]})


def _check_rle(texts: list[str], total: int, name: str, from_file: bool) -> None:
    try:
        core.areas_many(texts, total, 0)
    except RLEError as exc:
        item = failed_item(exc)
        if item is None:
            raise
        row, reason = item
        shown = texts[row] if len(texts[row]) <= 60 else texts[row][:60] + "..."
        raise LabelError(f"{_where(name, from_file, row)}: malformed EncodedPixels {shown!r}: {reason}") from None


def read_labels(
    source: pd.DataFrame | str | PathLike, images: Iterable[str] | None = None, shape: tuple[int, int] = SHAPE
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
    _check_columns(list(frame.columns), name)
    columns = set(frame.columns)
    if {"ImageId_ClassId", "EncodedPixels"} <= columns:
        frame = _split_old(frame, name, from_file)
    elif {"ImageId", "ClassId", "EncodedPixels"} <= columns:
        frame = frame[["ImageId", "ClassId", "EncodedPixels"]].copy()
        _check_image_ids(frame["ImageId"], name, from_file)
    else:
        raise LabelError(
            f"{name}: expected columns ImageId,ClassId,EncodedPixels (new format) or ImageId_ClassId,EncodedPixels "
            f"(old format), got {list(frame.columns)}"
        )
    frame["ImageId"] = frame["ImageId"].astype(str)
    pixels = frame["EncodedPixels"]
    frame["EncodedPixels"] = pixels.where(pixels.notna(), "").astype(str)
    class_ids = pd.to_numeric(frame["ClassId"].astype(str), errors="coerce")
    bad = ~class_ids.isin(CLASSES)
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
        grid = pd.MultiIndex.from_product([sorted({str(i) for i in images} | set(frame["ImageId"])), list(CLASSES)],
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
            # Minimal quoting quotes a value with "\n" but not one with a bare "\r", which readers take for a line
            # break: quote every field then.
            has_cr = any(isinstance(v, str) and "\r" in v for column in table.columns for v in table[column].tolist())
            table.to_csv(tmp, index=False, quoting=csv.QUOTE_ALL if has_cr else csv.QUOTE_MINIMAL)
        elif kind == "xlsx":
            longest = int(table["EncodedPixels"].str.len().max()) if len(table) else 0
            if longest > _EXCEL_CELL_LIMIT:
                raise ValueError(
                    f"an EncodedPixels value has {longest} characters, more than an Excel cell holds "
                    f"({_EXCEL_CELL_LIMIT}); write .csv or .parquet instead"
                )
            _need("openpyxl", "excel")
            _write_xlsx(table, tmp)
        else:
            _need("pyarrow", "parquet")
            table.to_parquet(tmp, index=False)
    return target


def _write_xlsx(table: pd.DataFrame, path: Path) -> None:
    for column in table.columns:
        for row, value in enumerate(table[column].tolist()):
            found = _XLSX_UNSAFE.search(value) if isinstance(value, str) else None
            if found:
                raise ValueError(
                    f"{column} {value!r:.120} (row {row}) has the character {found.group()!r}, which an .xlsx cell "
                    "cannot hold exactly; write .csv or .parquet instead"
                )
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        table.to_excel(writer, index=False, sheet_name="Sheet1")
        for row_cells in writer.sheets["Sheet1"].iter_rows(min_row=2):
            for cell in row_cells:
                # openpyxl stores a str starting with "=" as a formula: an image named "=HYPERLINK(...).jpg" would
                # become a live formula (and read back as empty). A string cell keeps the exact text.
                if isinstance(cell.value, str):
                    cell.data_type = "s"


def _need(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ImportError(f"writing this format needs {module}: pip install 'steelfast[{extra}]'") from None


def build_masks(labels: pd.DataFrame, image_id: str, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """Decode the four class masks of one image.

    Args:
        labels: table from :func:`read_labels`.
        image_id: e.g. ``"0002cc93b.jpg"``; an image without rows (defect-free in the new format) gives zeros.
        shape: (H, W).

    Returns:
        uint8 array (4, H, W), channel c holding ClassId c + 1.
    """
    rows = labels.loc[labels["ImageId"] == image_id, ["ClassId", "EncodedPixels"]]
    texts = [""] * len(CLASSES)
    for class_id, text in zip(rows["ClassId"].tolist(), rows["EncodedPixels"].tolist()):
        texts[int(class_id) - 1] = text
    return decode_batch(texts, shape, threads=1)


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
    missing = [c for c in _TABLE_COLUMNS if c not in labels.columns]
    if missing:
        raise ValueError(f"labels lack columns {missing}; got columns {list(labels.columns)}")
    enc = labels["EncodedPixels"].fillna("").astype(str).str.strip()
    rows = labels.loc[enc != "", ["ImageId", "ClassId"]].assign(EncodedPixels=enc[enc != ""])
    cls = pd.to_numeric(rows["ClassId"], errors="coerce")
    bad = ~cls.isin(CLASSES)
    if bad.any():
        i = bad.to_numpy().nonzero()[0][0]
        raise ValueError(
            f"ClassId must be 1..4, got {rows['ClassId'].iloc[i]} for {rows['ImageId'].iloc[i]!r}"
        )
    return rows.assign(ImageId=rows["ImageId"].astype(str), ClassId=cls.astype(int))


def read_image_list(path: str | PathLike) -> list[str]:
    """Read an image list: a CSV with an ``ImageId`` column, or a text file with one name a line.

    Args:
        path: e.g. ``train_partial_images.csv``.

    Returns:
        list[str]: The image ids in file order.

    Raises:
        FileNotFoundError: missing file.
        ValueError: a CSV without an ``ImageId`` column, a file that is not UTF-8 text or not a readable CSV (the
            message names the file, and the row where the parser tells it).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image list not found: {p}")
    try:
        if p.suffix.lower() == ".csv":
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        else:
            return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"image list {p} is not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at offset {exc.start})"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).strip().replace("Error tokenizing data. C error: ", "")
        raise ValueError(f"image list {p} is not a readable CSV: {reason}") from None
    if "ImageId" not in df.columns:
        raise ValueError(f"{p} has no ImageId column; got columns {list(df.columns)}")
    return df["ImageId"].tolist()
