"""steelfast.labels: both Kaggle formats, validation errors that name file/line/value, writers, masks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from oracles import rle2mask

from steelfast import labels
from steelfast.labels import defect_rows, read_image_list

SHAPE = (4, 5)


def _write(tmp_path, text, name="labels.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_old_and_new_formats_give_the_same_table(tmp_path):
    old = _write(tmp_path, "ImageId_ClassId,EncodedPixels\na.jpg_1,1 2\na.jpg_2,\na.jpg_3,\na.jpg_4,3 1\n", "old.csv")
    new = _write(tmp_path, "ImageId,EncodedPixels,ClassId\na.jpg,3 1,4\na.jpg,1 2,1\n", "new.csv")
    from_old = labels.read_labels(old, shape=SHAPE)
    from_new = labels.read_labels(new, images=["a.jpg"], shape=SHAPE)
    pd.testing.assert_frame_equal(from_old, from_new)
    assert list(from_old.columns) == ["ImageId", "ClassId", "EncodedPixels", "hasMask"]
    assert from_old["ClassId"].dtype == np.int64 and from_old["hasMask"].tolist() == [True, False, False, True]
    assert len(labels.read_labels(new, shape=SHAPE)) == 2  # defect rows only without `images`


def test_images_list_adds_defect_free_images(tmp_path):
    new = _write(tmp_path, "ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\n")
    table = labels.read_labels(new, images=["a.jpg", "b.jpg"], shape=SHAPE)
    assert len(table) == 8 and table["hasMask"].sum() == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ImageId,Class,EncodedPixels\na.jpg,1,1 2\n", r"expected columns .* got \['ImageId', 'Class', 'EncodedPixels'\]"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\nb.jpg,5,1 2\n", r"labels.csv, line 3: ClassId '5' is not one of"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,x,1 2\n", r"line 2: ClassId 'x'"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\nb.jpg,1,\na.jpg,1,3 1\n", r"duplicate \(ImageId, ClassId\) = \('a.jpg', 1\) at line 2, line 4"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\nb.jpg,2,5 2 1\n", r"line 3: malformed EncodedPixels '5 2 1': odd number of tokens"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,19 5\n", r"line 2: .*runs past the mask's 20 pixels"),
        ("ImageId_ClassId,EncodedPixels\nabc,1 1\n", r"line 2: ImageId_ClassId 'abc' has no '_<class>' suffix"),
    ],
)
def test_malformed_files_name_file_line_and_value(tmp_path, text, message):
    with pytest.raises(labels.LabelError, match=message):
        labels.read_labels(_write(tmp_path, text), shape=SHAPE)


def test_missing_file_and_wrong_type(tmp_path):
    with pytest.raises(FileNotFoundError, match="label file not found"):
        labels.read_labels(tmp_path / "nope.csv")
    with pytest.raises(TypeError, match="DataFrame or a CSV path"):
        labels.read_labels(42)


def test_dataframe_errors_name_the_row():
    frame = pd.DataFrame({"ImageId": ["a.jpg"], "ClassId": [0], "EncodedPixels": [""]})
    with pytest.raises(labels.LabelError, match=r"<DataFrame>, row 0: ClassId '0'"):
        labels.read_labels(frame)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".parquet"])
@pytest.mark.parametrize("style", ["new", "old"])
def test_write_submission_round_trips(tmp_path, suffix, style):
    frame = pd.DataFrame({"ImageId": ["a.jpg"] * 4, "ClassId": [1, 2, 3, 4], "EncodedPixels": ["1 2", "", "", "3 1"]})
    path = labels.write_submission(frame, tmp_path / f"sub{suffix}", style=style)
    if suffix == ".csv":
        back = labels.read_labels(path, shape=SHAPE)
    elif suffix == ".xlsx":
        back = labels.read_labels(pd.read_excel(path, dtype=str, keep_default_na=False), shape=SHAPE)
    else:
        back = labels.read_labels(pd.read_parquet(path), shape=SHAPE)
    assert back["EncodedPixels"].tolist() == frame["EncodedPixels"].tolist()
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


def test_write_submission_drop_empty_and_errors(tmp_path):
    frame = pd.DataFrame({"ImageId": ["a.jpg", "a.jpg"], "ClassId": [1, 2], "EncodedPixels": ["1 2", ""]})
    path = labels.write_submission(frame, tmp_path / "train.csv", drop_empty=True)
    assert path.read_text().splitlines() == ["ImageId,ClassId,EncodedPixels", "a.jpg,1,1 2"]
    with pytest.raises(ValueError, match="unknown output format"):
        labels.write_submission(frame, tmp_path / "x.txt")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['ClassId'\]"):
        labels.write_submission(frame.drop(columns="ClassId"), tmp_path / "x.csv")
    long = frame.assign(EncodedPixels=[" ".join(["1 1"] * 20000), ""])
    with pytest.raises(ValueError, match="more than an Excel cell holds"):
        labels.write_submission(long, tmp_path / "x.xlsx")
    assert not (tmp_path / "x.xlsx").exists()


def test_build_masks():
    table = pd.DataFrame({"ImageId": ["a.jpg", "a.jpg"], "ClassId": [2, 4], "EncodedPixels": ["1 3", "7 2"]})
    masks = labels.build_masks(table, "a.jpg", SHAPE)
    assert masks.shape == (4, 4, 5) and masks.dtype == np.uint8
    np.testing.assert_array_equal(masks[1], rle2mask("1 3", SHAPE))
    np.testing.assert_array_equal(masks[3], rle2mask("7 2", SHAPE))
    assert not masks[[0, 2]].any()
    assert not labels.build_masks(table, "other.jpg", SHAPE).any()


def test_real_labels(real_data):
    table = labels.read_labels(real_data / "train_partial.csv")
    assert len(table) == 3689 and table["hasMask"].all()
    old = labels.read_labels(real_data / "sample_submission_old_format.csv")
    assert len(old) == 7204 and old.groupby("ImageId").size().eq(4).all()
    with pytest.raises(labels.LabelError, match=r"sample_submission.csv, line 2: ClassId '0'"):
        labels.read_labels(real_data / "sample_submission.csv")  # the later Kaggle file uses ClassId 0 placeholders


def test_written_files_get_ordinary_permissions(tmp_path):
    frame = pd.DataFrame({"ImageId": ["a.jpg"], "ClassId": [1], "EncodedPixels": ["1 2"]})
    path = labels.write_submission(frame, tmp_path / "sub.csv")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# ---- rows with extra fields, empty ids, mixed formats; Excel text cells (issue 13) ---------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # every row has the extra field: pandas alone would take ImageId for an index and blame ClassId '1 2'
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2,x\n", r"labels.csv, line 2: 4 fields, but the header has 3"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\nb.jpg,1,1 2,x\n", r"labels.csv, line 3: 4 fields, but the header has 3"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2,\n", r"line 2: 4 fields, .*trailing comma"),
        ("ImageId,ClassId,EncodedPixels\n\na.jpg,1,1 2\n\nb.jpg,2,1,2,x\n", r"line 5: 5 fields, but the header has 3"),
        ("ImageId_ClassId,EncodedPixels\na.jpg_1,1 2,3\n", r"line 2: 3 fields, but the header has 2"),
        # a short row is an error too, not a defect-free row with the missing values left empty
        ("ImageId,ClassId,EncodedPixels\n000a4bcdd.jpg,1\n", r"labels.csv, line 2: 2 fields, but the header has 3"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\n\n  \nb.jpg\n", r"labels.csv, line 5: 1 field, but the header has 3"),
        # a quoted newline: the record's fields are counted over both lines
        ('ImageId,ClassId,EncodedPixels\n"a\nb.jpg",1,1 2\nc.jpg,2\n', r"labels.csv, line 4: 2 fields, .*missing field"),
        ('ImageId,ClassId,EncodedPixels\n"a,""x"",\nb.jpg",1\n', r"labels.csv, line 3: 2 fields, .*missing field"),
        ("ImageId_ClassId,EncodedPixels\na.jpg_1,\na.jpg_2\n", r"labels.csv, line 3: 1 field, but the header has 2"),
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\n,2,1 2\n", r"labels.csv, line 3: ImageId is empty \(''\)"),
        ("ImageId,ClassId,EncodedPixels\n  ,1,1 2\n", r"labels.csv, line 2: ImageId is empty \('  '\)"),
        ("ImageId_ClassId,EncodedPixels\na.jpg_1,\n_2,1 2\n", r"line 3: ImageId_ClassId '_2' has an empty ImageId"),
        ("ImageId_ClassId,ImageId,ClassId,EncodedPixels\na.jpg_1,a.jpg,1,1 2\n",
         r"labels.csv: has both the old format's ImageId_ClassId column and the new format's \['ImageId', 'ClassId'\]"),
        ("ImageId,ImageId_ClassId,EncodedPixels\na.jpg,a.jpg_1,1 2\n", r"has both .* new format's \['ImageId'\]"),
        ("ImageId,ClassId,EncodedPixels,ClassId\na.jpg,1,1 2,2\n", r"column\(s\) \['ClassId'\] appear more than once"),
    ],
)
def test_malformed_rows_and_columns_name_file_and_line(tmp_path, text, message):
    with pytest.raises(labels.LabelError, match=message):
        labels.read_labels(_write(tmp_path, text), shape=SHAPE)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"ImageId": ["a.jpg", None], "ClassId": [1, 2], "EncodedPixels": ["", ""]}),
         r"<DataFrame>, row 1: ImageId is empty \((None|nan)\)"),
        (pd.DataFrame({"ImageId": [float("nan")], "ClassId": [1], "EncodedPixels": [""]}), r"row 0: ImageId is empty"),
        (pd.DataFrame({"ImageId_ClassId": ["a.jpg_1"], "ClassId": [1], "EncodedPixels": [""]}),
         r"<DataFrame>: has both .* new format's \['ClassId'\]"),
    ],
)
def test_dataframe_ids_and_columns_are_checked(frame, message):
    with pytest.raises(labels.LabelError, match=message):
        labels.read_labels(frame, shape=SHAPE)


def test_utf8_bom_header_still_reads(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffImageId,ClassId,EncodedPixels\na.jpg,1,1 2\n".encode())
    assert labels.read_labels(path, shape=SHAPE)["ImageId"].tolist() == ["a.jpg"]


FORMULA_LIKE = ["=HYPERLINK(1).jpg", "=1+2", "+1.jpg", "-1.jpg", "@a.jpg", "\ta.jpg", " a.jpg ", "a\nb.jpg"]


@pytest.mark.parametrize("style", ["new", "old"])
def test_xlsx_keeps_formula_like_image_ids_as_text(tmp_path, style):
    openpyxl = pytest.importorskip("openpyxl")
    frame = pd.DataFrame({"ImageId": FORMULA_LIKE, "ClassId": 1, "EncodedPixels": "1 2"})
    path = labels.write_submission(frame, tmp_path / "sub.xlsx", style=style)
    expected = FORMULA_LIKE if style == "new" else [f"{name}_1" for name in FORMULA_LIKE]
    cells = list(openpyxl.load_workbook(path).active["A"])[1:]
    assert [c.value for c in cells] == expected and {c.data_type for c in cells} == {"s"}
    back = pd.read_excel(path, dtype=str, keep_default_na=False)
    assert back.iloc[:, 0].tolist() == expected
    if style == "new":
        assert labels.read_labels(back, shape=SHAPE)["ImageId"].tolist() == sorted(FORMULA_LIKE)


@pytest.mark.parametrize(("name", "shown"), [("\ra.jpg", r"'\\r'"), ("a\x01.jpg", r"'\\x01'"), ("a\x1f", r"'\\x1f'")])
def test_xlsx_refuses_characters_a_cell_cannot_keep(tmp_path, name, shown):
    frame = pd.DataFrame({"ImageId": ["a.jpg", name], "ClassId": [1, 2], "EncodedPixels": ["", ""]})
    with pytest.raises(ValueError, match=rf"ImageId .* \(row 1\) has the character {shown}, which an .xlsx cell"):
        labels.write_submission(frame, tmp_path / "sub.xlsx")
    assert not (tmp_path / "sub.xlsx").exists()


@pytest.mark.parametrize("header", ["ImageId,ClassId,EncodedPixels", "ImageId_ClassId,EncodedPixels"])
def test_header_only_files_give_an_empty_table(tmp_path, header):
    table = labels.read_labels(_write(tmp_path, header + "\n"), shape=SHAPE)
    assert len(table) == 0 and list(table.columns) == ["ImageId", "ClassId", "EncodedPixels", "hasMask"]
    assert table["ClassId"].dtype == np.int64


@pytest.mark.parametrize(
    ("text", "images"),
    [
        ("ImageId_ClassId,EncodedPixels\na.jpg_1,\na.jpg_2,1 2\n\n\n", ["a.jpg", "a.jpg"]),  # empty EncodedPixels
        ("ImageId,ClassId,EncodedPixels\na.jpg,1,\n  \n\n", ["a.jpg"]),  # blank and whitespace-only lines
        ("ImageId,ClassId,EncodedPixels\n", []),
    ],
)
def test_empty_fields_and_blank_lines_are_not_short_rows(tmp_path, text, images):
    assert labels.read_labels(_write(tmp_path, text), shape=SHAPE)["ImageId"].tolist() == images


def test_short_row_check_reads_long_encoded_pixels(tmp_path):
    # csv's default field limit is 131072 characters; a real EncodedPixels can be longer.
    runs = " ".join(f"{1 + 2 * i} 1" for i in range(30000))
    path = _write(tmp_path, f"ImageId,ClassId,EncodedPixels\na.jpg,1,{runs}\nb.jpg\n")
    with pytest.raises(labels.LabelError, match=r"line 3: 1 field, "):
        labels.read_labels(path, shape=(300, 300))
    path = _write(tmp_path, f"ImageId,ClassId,EncodedPixels\na.jpg,1,{runs}\n")
    assert labels.read_labels(path, shape=(300, 300))["hasMask"].tolist() == [True]


@pytest.mark.parametrize("style", ["new", "old"])
def test_csv_round_trips_image_ids_with_a_bare_carriage_return(tmp_path, style):
    # csv's minimal quoting leaves a lone "\r" unquoted, and readers then split the row there.
    ids = ["a\rb.jpg", "c.jpg", 'q"u,o\r\n.jpg']
    frame = pd.DataFrame({"ImageId": ids, "ClassId": [1, 2, 3], "EncodedPixels": ["1 2", "", "3 1"]})
    back = labels.read_labels(labels.write_submission(frame, tmp_path / "sub.csv", style=style), shape=SHAPE)
    assert back["ImageId"].tolist() == ids and back["EncodedPixels"].tolist() == ["1 2", "", "3 1"]


def test_read_image_list(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("ImageId,label_source\na.jpg,rle\nb.jpg,x\n")
    (tmp_path / "l.txt").write_text("a.jpg\n\nb.jpg\n")
    (tmp_path / "bad.csv").write_text("name\na.jpg\n")
    assert (
        read_image_list(tmp_path / "l.csv")
        == ["a.jpg", "b.jpg"]
        == read_image_list(tmp_path / "l.txt")
    )
    with pytest.raises(ValueError, match=r"no ImageId column; got columns \['name'\]"):
        read_image_list(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="image list not found"):
        read_image_list(tmp_path / "none.csv")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bin.csv", b"\xff\xfe\x00\x01", r"image list \S*bin.csv is not UTF-8 text \(byte b'\\xff' at offset 0\)"),
        ("bin.txt", b"a.jpg\n\xff\n", r"image list \S*bin.txt is not UTF-8 text \(byte b'\\xff' at offset 6\)"),
        ("quote.csv", b'ImageId\n"a\n', r"image list \S*quote.csv is not a readable CSV: EOF inside string starting at row 1"),
        ("empty.csv", b"", r"image list \S*empty.csv is not a readable CSV: No columns to parse"),
    ],
)
def test_read_image_list_unreadable_files_are_named(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_image_list(tmp_path / name)


def test_defect_rows_keeps_defects_and_checks_the_table() -> None:
    frame = pd.DataFrame(
        {"ImageId": ["a.jpg", "a.jpg", "b.jpg"], "ClassId": ["1", "3", 2], "EncodedPixels": ["1 2", " ", None]}
    )
    rows = defect_rows(frame)
    assert rows["ImageId"].tolist() == ["a.jpg"] and rows["ClassId"].tolist() == [1]
    assert rows["EncodedPixels"].tolist() == ["1 2"]
    with pytest.raises(TypeError, match="labels must be a DataFrame"):
        defect_rows([("a.jpg", 1, "1 2")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"lack columns \['ClassId'\]"):
        defect_rows(frame.drop(columns="ClassId"))
    with pytest.raises(ValueError, match=r"ClassId must be 1..4, got 5 for 'a.jpg'"):
        defect_rows(frame.assign(ClassId=[5, 1, 1]))


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.zip", ".csv.bz2"])
def test_compressed_label_files_are_read_and_checked(tmp_path, suffix):
    # Kaggle ships train.csv.zip; pandas reads it, and the short-row check reads it the same way.
    good = pd.DataFrame({"ImageId": ["a.jpg", "b.jpg"], "ClassId": [1, 3], "EncodedPixels": ["1 2", ""]})
    good.to_csv(tmp_path / f"good{suffix}", index=False)
    assert labels.read_labels(tmp_path / f"good{suffix}", shape=SHAPE)["hasMask"].tolist() == [True, False]
    short = "ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\nb.jpg,3\n"
    import bz2
    import gzip
    import zipfile

    path = tmp_path / f"short{suffix}"
    if suffix.endswith(".gz"):
        path.write_bytes(gzip.compress(short.encode()))
    elif suffix.endswith(".bz2"):
        path.write_bytes(bz2.compress(short.encode()))
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("short.csv", short)
    with pytest.raises(labels.LabelError, match=rf"short{suffix}, line 3: 2 fields, but the header has 3"):
        labels.read_labels(path, shape=SHAPE)


def test_the_short_row_check_leaves_the_csv_field_limit_alone(tmp_path):
    import csv

    before = csv.field_size_limit()
    runs = " ".join(f"{1 + 2 * i} 1" for i in range(30000))  # longer than csv's default field limit
    path = _write(tmp_path, f'ImageId,ClassId,EncodedPixels\n"a.jpg",1,"{runs}"\n')
    assert labels.read_labels(path, shape=(300, 300))["hasMask"].tolist() == [True]
    assert csv.field_size_limit() == before
