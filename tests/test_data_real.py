"""steelfast.data.real: labelled images with full masks or class presence only."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from steelfast.data.real import LabelledSet, load_labelled, load_shared, read_presence
from steelfast.labels import LabelError
from steelfast.rle import encode


def _write_folder(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, Path, Path, dict]:
    images = tmp_path / "train_images"
    images.mkdir()
    masks = {}
    for name in ("a.jpg", "b.jpg", "c.png", "d.jpg"):
        gray = rng.integers(0, 255, (256, 1600), dtype=np.uint8)
        cv2.imwrite(str(images / name), gray)
    m = np.zeros((256, 1600), np.uint8)
    m[10:40, 100:300] = 1
    masks["a.jpg"] = m
    labels = tmp_path / "train.csv"
    pd.DataFrame({"ImageId": ["a.jpg"], "ClassId": [3], "EncodedPixels": [encode(m)]}).to_csv(labels, index=False)
    presence = tmp_path / "weak.csv"
    pd.DataFrame({"ImageId": ["d.jpg", "c.jpg"], "area_class_1": [0, 5], "area_class_2": [0, 0],
                  "area_class_3": [0, 0], "area_class_4": [120, 0]}).to_csv(presence, index=False)
    return images, labels, presence, masks


def test_full_weak_and_png_stand_in(tmp_path: Path, rng: np.random.Generator) -> None:
    images, labels, presence, masks = _write_folder(tmp_path, rng)
    data = load_labelled(images, labels, presence=presence)
    assert data.ids == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]  # c.png serves as c.jpg
    assert data.full.tolist() == [True, True, False, False]
    assert data.presence.tolist() == [[False, False, True, False], [False] * 4,
                                      [True, False, False, False], [False, False, False, True]]
    np.testing.assert_array_equal(data.masks[0][2], masks["a.jpg"])
    assert data.masks[1].sum() == 0 and data.masks[2] is None
    assert data.images.shape == (4, 256, 1600) and data.images.dtype == np.uint8
    sub = data.subset([3, 0])
    assert sub.ids == ["d.jpg", "a.jpg"] and sub.full.tolist() == [False, True]
    assert data.summary() == {"images": 4, "full": 2, "weak": 2, "defect_free": 1,
                              "images_per_class": {"1": 1, "2": 0, "3": 1, "4": 1}}
    # The weak images' areas come from the area_class_* columns; full images' are NaN (masks hold them).
    np.testing.assert_array_equal(data.areas, [[np.nan] * 4, [np.nan] * 4, [5, 0, 0, 0], [0, 0, 0, 120]])
    np.testing.assert_array_equal(sub.areas, [[0, 0, 0, 120], [np.nan] * 4])


@pytest.mark.parametrize(("columns", "kept"), [(["area_class_1", "area_class_2", "area_class_3", "area_class_4"], True),
                                               (["class_1", "class_2", "class_3", "class_4"], False),
                                               (["area_class_1", "class_2", "class_3", "class_4"], False)])
def test_presence_keeps_areas_only_from_four_area_columns(tmp_path: Path, rng: np.random.Generator,
                                                          columns: list[str], kept: bool) -> None:
    images, labels, presence, _ = _write_folder(tmp_path, rng)
    table = pd.read_csv(presence).set_axis(["ImageId", *columns], axis=1)
    read = read_presence(table)
    assert ("area_class_1" in read.columns) == kept
    data = load_labelled(images, labels, presence=table)
    assert np.isfinite(data.areas).any() == kept
    if kept:  # a table read back reads the same areas again
        np.testing.assert_array_equal(load_labelled(images, labels, presence=read).areas, data.areas)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("Image,area_class_1\nx.jpg,1\n", "needs an ImageId column"),
        ("ImageId,area_class_1,area_class_2,area_class_3\nx.jpg,1,0,0\n", "no column area_class_4, class_4 or 4"),
        ("ImageId,class_1,class_2,class_3,class_4\nx.jpg,1,0,big,0\n", r"line 2: class_3 must be a number >= 0, got 'big'"),
        ("ImageId,class_1,class_2,class_3,class_4\nx.jpg,1,0,0,-1\n", r"line 2: class_4 must be a number >= 0, got '-1'"),
        ("ImageId,class_1,class_2,class_3,class_4\n,1,0,0,0\n", "line 2: empty ImageId"),
    ],
)
def test_presence_table_errors(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "p.csv"
    path.write_text(content)
    with pytest.raises(LabelError, match=match):
        read_presence(path)


@pytest.mark.parametrize("form", ["file", "frame", "frame of bools", "read back"])
def test_presence_as_a_dataframe_loads_as_the_file_does(tmp_path: Path, rng: np.random.Generator, form: str) -> None:
    images, labels, presence, _ = _write_folder(tmp_path, rng)
    table = {"file": presence, "frame": pd.read_csv(presence),
             "frame of bools": pd.read_csv(presence).set_axis(["ImageId", 1, 2, 3, 4], axis=1).astype(
                 {c: bool for c in (1, 2, 3, 4)}),
             "read back": read_presence(presence)}[form]
    expected = load_labelled(images, labels, presence=presence)
    data = load_labelled(images, labels, presence=table)
    assert data.ids == expected.ids and data.full.tolist() == expected.full.tolist()
    np.testing.assert_array_equal(data.presence, expected.presence)


def test_presence_dataframe_keeps_image_ids_as_given() -> None:
    frame = pd.DataFrame({"ImageId": ["True", "False"], 1: [True, False], 2: [False, True], 3: 0, 4: 0.5})
    got = read_presence(frame)
    assert got["ImageId"].tolist() == ["True", "False"]
    assert got[[1, 2, 3, 4]].to_numpy().tolist() == [[True, False, False, True], [False, True, False, True]]


@pytest.mark.parametrize(
    ("frame", "error", "match"),
    [
        (pd.DataFrame({"ImageId": ["x.jpg"], "class_1": [1], "class_2": [0], "class_3": ["big"], "class_4": [0]}),
         LabelError, r"presence table \(DataFrame\), index 0: class_3 must be a number >= 0, got 'big'"),
        (pd.DataFrame({"ImageId": ["x.jpg", "y.jpg"], "class_1": [1, None], "class_2": 0, "class_3": 0, "class_4": 0},
                      index=[10, 11]),
         LabelError, r"presence table \(DataFrame\), index 11: class_1 must be a number >= 0, got '?nan'?"),
        (pd.DataFrame({"ImageId": ["x.jpg", np.nan], "1": 1, "2": 0, "3": 0, "4": 0}),
         LabelError, r"presence table \(DataFrame\), index 1: missing ImageId, got nan"),
        (pd.DataFrame({"ImageId": ["x.jpg", None], "1": 1, "2": 0, "3": 0, "4": 0}),
         LabelError, r"index 1: missing ImageId, got (None|nan)"),  # pandas 3 reads None in strings as NaN
        (pd.DataFrame([["x.jpg", 1, 1, 0, 0, 0]], columns=["ImageId", 1, "1", 2, 3, 4]),
         LabelError, r"presence table \(DataFrame\): column '1' appears twice"),
        (pd.DataFrame({"Image": ["x.jpg"]}), LabelError, r"presence table \(DataFrame\): a presence table needs an "
                                                          r"ImageId column, got \['Image'\]"),
        ([("x.jpg", 1, 0, 0, 0)], TypeError, "presence must be a CSV path or a DataFrame, got list"),
    ],
)
def test_presence_dataframe_errors(frame: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        read_presence(frame)  # type: ignore[arg-type]


def test_missing_files(tmp_path: Path, rng: np.random.Generator) -> None:
    images, labels, _, _ = _write_folder(tmp_path, rng)
    with pytest.raises(FileNotFoundError, match="presence table not found"):
        read_presence(tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError, match="labelled images are not in"):
        load_labelled(images, labels, full_ids=["a.jpg", "zzz.jpg"])


def test_wrong_image_size(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "s.jpg"), np.zeros((100, 200), np.uint8))
    labels = tmp_path / "l.csv"
    labels.write_text("ImageId,ClassId,EncodedPixels\n")
    with pytest.raises(ValueError, match=r"s.jpg: expected a 256×1600 image, got 100×200"):
        load_labelled(folder, labels)


def test_shared_material(real_data: Path) -> None:
    data = load_shared(real_data)
    classes = pd.read_csv(real_data / "image_classes.csv")
    assert int(data.full.sum()) == int((classes.drop_duplicates("ImageId")["has_rle_labels"] == 1).sum()) == 53
    # Presence from the masks agrees with the per-class areas of the index, image by image.
    areas = classes.drop_duplicates("ImageId").set_index("ImageId")
    for i, image_id in enumerate(data.ids):
        expected = [areas.loc[image_id, f"area_class_{c}"] > 0 for c in (1, 2, 3, 4)]
        assert data.presence[i].tolist() == expected, image_id
        expected_areas = [int(areas.loc[image_id, f"area_class_{c}"]) for c in (1, 2, 3, 4)]
        if data.full[i]:
            assert [int(data.masks[i][c].sum()) for c in range(4)] == expected_areas
            assert np.isnan(data.areas[i]).all()
        else:
            assert data.areas[i].tolist() == expected_areas, image_id


def _tiny(ids: list[str], full: bool) -> LabelledSet:
    n = len(ids)
    masks = [np.full((4, 256, 1600), k % 2, np.uint8) if full else None for k in range(n)]
    return LabelledSet(ids, np.full((n, 256, 1600), len(ids[0]), np.uint8),
                       np.eye(4, dtype=bool)[np.arange(n) % 4], np.full(n, full), masks, {"name": ids[0]})


def test_concat_keeps_order_and_parts() -> None:
    a, b = _tiny(["a.jpg", "b.jpg"], True), _tiny(["cc.jpg"], False)
    both = LabelledSet.concat([a, b])
    assert both.ids == ["a.jpg", "b.jpg", "cc.jpg"] and both.full.tolist() == [True, True, False]
    assert both.images[2, 0, 0] == 6 and both.masks[2] is None and both.masks[1][0, 0, 0] == 1
    np.testing.assert_array_equal(both.presence, np.concatenate([a.presence, b.presence]))
    assert both.source == {"parts": [{"name": "a.jpg"}, {"name": "cc.jpg"}]}


@pytest.mark.parametrize(("sets", "match"), [([], "at least one LabelledSet"),
                                             ([["a.jpg"], ["a.jpg"]], "more than one set")])
def test_concat_errors(sets: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LabelledSet.concat([_tiny(ids, True) for ids in sets])


def _change_image(s: LabelledSet) -> None:
    s.images[1, 10, 20] ^= 1


def _change_presence(s: LabelledSet) -> None:
    s.presence[0, 3] = ~s.presence[0, 3]


def _change_mask(s: LabelledSet) -> None:
    s.masks[0][2, 5, 5] ^= 1


def _drop_mask(s: LabelledSet) -> None:
    s.masks[0] = None


def _rename(s: LabelledSet) -> None:
    s.ids[1] = "z.jpg"


def _maps_only(s: LabelledSet) -> None:
    s.gate[1] = False


def _known_area(s: LabelledSet) -> None:
    s.areas[1, 2] = 900.0


def test_digest_of_a_set_that_all_trains_the_gate_is_unchanged() -> None:
    """Fold models record the digest of what they trained on: a set whose every image trains the gate
    keeps the digest steelfast gave it before ``gate`` existed (this literal, from commit 2b9f63e)."""
    images = (np.arange(3 * 256 * 1600) % 251).astype(np.uint8).reshape(3, 256, 1600)
    presence = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], bool)
    box = np.zeros((4, 256, 1600), np.uint8)
    box[0, 10:50, 100:300] = 1
    data = LabelledSet(["a.jpg", "b.jpg", "c.jpg"], images, presence, np.array([True, False, True]),
                       [box, None, np.zeros((4, 256, 1600), np.uint8)])  # full, weak, defect-free
    assert data.digest() == "41d23e7ab7bbd6555d5aeed827667a3e33d2f62032e9ed7196c43e8a098e6a09"
    data.gate[1] = False
    assert data.digest() != "41d23e7ab7bbd6555d5aeed827667a3e33d2f62032e9ed7196c43e8a098e6a09"


def test_areas_default_to_unknown_and_follow_subset_and_concat() -> None:
    a, b = _tiny(["a.jpg", "b.jpg"], True), _tiny(["cc.jpg"], False)
    assert a.areas.shape == (2, 4) and np.isnan(a.areas).all() and a.areas.dtype == np.float32
    b.areas[0] = [0, 700, 0, 0]
    both = LabelledSet.concat([a, b])
    np.testing.assert_array_equal(both.subset([2, 0]).areas, [[0, 700, 0, 0], [np.nan] * 4])


@pytest.mark.parametrize(("areas", "match"), [
    (np.zeros((2, 3)), r"areas must have shape \(2, 4\), got \(2, 3\)"),
    (np.array([[0, 0, 0, 0], [0, -5, 0, 0]]), r"areas must be >= 0 or NaN, got -5.0 for 'b.jpg', class 2"),
])
def test_areas_of_the_wrong_shape_or_sign(areas: np.ndarray, match: str) -> None:
    a = _tiny(["a.jpg", "b.jpg"], False)
    with pytest.raises(ValueError, match=match):
        LabelledSet(a.ids, a.images, a.presence, a.full, a.masks, areas=areas)


def test_gate_defaults_to_all_and_follows_subset_and_concat() -> None:
    a, b = _tiny(["a.jpg", "b.jpg"], True), _tiny(["cc.jpg"], False)
    assert a.gate.tolist() == [True, True]
    b.gate[0] = False
    both = LabelledSet.concat([a, b])
    assert both.gate.tolist() == [True, True, False]
    assert both.subset([2, 1]).gate.tolist() == [False, True]
    assert both.summary()["maps_only"] == 1 and "maps_only" not in a.summary()


@pytest.mark.parametrize(("gate", "exc", "match"), [
    (np.ones(3, bool), ValueError, r"gate must have one mark per image, shape \(2,\), got array\(\[ True,  True,  True\]\)"),
    (np.ones((2, 1000), bool), ValueError, r"one mark per image, shape \(2,\), got bool array of shape \(2, 1000\)"),
    (np.ones(2, np.uint8), TypeError, r"gate must be a bool array \(one mark per image\), got array\(\[1, 1\], dtype=uint8\)"),
    ([True, "x"], TypeError, r"gate must be a bool array .*got \[True, 'x'\]"),
])
def test_gate_of_the_wrong_shape_or_type(gate, exc: type, match: str) -> None:
    a = _tiny(["a.jpg", "b.jpg"], True)
    with pytest.raises(exc, match=match):
        LabelledSet(a.ids, a.images, a.presence, a.full, a.masks, gate=gate)


def test_digest_counts_areas_unless_told_they_did_not_train() -> None:
    a, b = _tiny(["a.jpg", "b.jpg"], False), _tiny(["a.jpg", "b.jpg"], False)
    b.areas[1, 2] = 900.0
    assert a.digest() != b.digest() and a.digest(areas=False) == b.digest(areas=False) == a.digest()


def test_digest_is_the_same_for_an_equal_copy() -> None:
    a, b = _tiny(["a.jpg", "b.jpg"], True), _tiny(["a.jpg", "b.jpg"], True)
    assert a.digest() == b.digest() and len(a.digest()) == 64


@pytest.mark.parametrize("change", [_change_image, _change_presence, _change_mask, _drop_mask, _rename, _maps_only,
                                    _known_area])
def test_digest_changes_with_any_image_label_mask_or_id(change) -> None:
    a, b = _tiny(["a.jpg", "b.jpg"], True), _tiny(["a.jpg", "b.jpg"], True)
    change(b)
    assert a.digest() != b.digest()
