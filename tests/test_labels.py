"""steelfast.labels: both Kaggle formats, validation errors that name file/line/value, writers, masks."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from oracles import rle2mask

from steelfast import labels

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
