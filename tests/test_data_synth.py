"""Tests for steelfast.data.synth: image/mask generator, statistics, dataset layout, determinism, CLI."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from steelfast import rle
from steelfast.cli import app
from steelfast.data.synth import make_dataset, synth_image
from steelfast.severstal import REAL_STATS, SHAPE


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synth_image_shapes_and_masks(seed: int) -> None:
    img, masks = synth_image(_rng(seed))
    assert img.shape == SHAPE == (256, 1600) and img.dtype == np.uint8
    assert masks.shape == (4, 256, 1600) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1}
    assert masks.sum(axis=0).max() <= 1  # classes never overlap


def test_synth_image_deterministic() -> None:
    a = synth_image(_rng(7))
    b = synth_image(_rng(7))
    c = synth_image(_rng(8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("classes", [(1,), (2,), (3,), (4,), (3, 4), (1, 3), (1, 2, 3), ()])
def test_forced_classes_present(classes: tuple[int, ...]) -> None:
    for seed in range(3):
        _, masks = synth_image(_rng(seed), classes=classes)
        present = tuple(c + 1 for c in range(4) if masks[c].any())
        assert present == classes


@pytest.mark.parametrize("cls", [1, 2, 3, 4])
def test_defect_visible_exactly_where_the_mask_is(cls: int) -> None:
    # With classes forced, the steel background uses the same random draws, so the defect-free
    # image of the same seed is the background of the defective one.
    for seed in range(4):
        clean, none = synth_image(_rng(seed), classes=())
        img, masks = synth_image(_rng(seed), classes=(cls,))
        assert not none.any()
        m = masks[cls - 1].astype(bool)
        diff = np.abs(img.astype(np.int16) - clean.astype(np.int16))
        near = cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert diff[~near].max() == 0  # nothing drawn outside the mask (+ 2 px soft edge)
        assert diff[m].mean() > 15  # and clearly visible inside it


def test_class_areas_ordered_like_real() -> None:
    areas = {c: [] for c in (1, 2, 3, 4)}
    for c, found in areas.items():
        for seed in range(12):
            _, masks = synth_image(_rng(100 + seed), classes=(c,))
            found.append(int(masks[c - 1].sum()))
    med = {c: np.median(v) for c, v in areas.items()}
    assert med[2] < med[3] < med[4]
    assert 1000 < med[1] < 10000 and 1000 < med[2] < 8000


def test_class_statistics_close_to_real() -> None:
    n = 300
    pres = np.zeros((n, 4), bool)
    for i in range(n):
        _, masks = synth_image(_rng(10_000 + i))
        pres[i] = masks.reshape(4, -1).any(axis=1)
    real = REAL_STATS["presence"]
    for c in range(4):
        p = real[c + 1]
        sigma = np.sqrt(p * (1 - p) / n)
        assert abs(pres[:, c].mean() - p) < 4 * sigma + 0.005, (c + 1, pres[:, c].mean(), p)
    free = 1 - pres.any(axis=1).mean()
    assert abs(free - 0.47) < 0.12
    assert pres.sum(axis=1).max() <= 3


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"classes": (0,)}, ValueError, r"distinct ints in 1..4, got \(0,\)"),
        ({"classes": (3, 3)}, ValueError, r"got \(3, 3\)"),
        ({"classes": ("1",)}, ValueError, "distinct ints"),
    ],
)
def test_synth_image_bad_classes(kwargs, exc, match) -> None:
    with pytest.raises(exc, match=match):
        synth_image(_rng(0), **kwargs)


def test_synth_image_needs_generator() -> None:
    with pytest.raises(TypeError, match="numpy.random.Generator, got int"):
        synth_image(3)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("synth") / "ds", 12, 4, seed=5, progress=False)


def test_layout_and_formats(dataset: Path) -> None:
    train = sorted(p.name for p in (dataset / "train_images").iterdir())
    test = sorted(p.name for p in (dataset / "test_images").iterdir())
    assert len(train) == 12 and len(test) == 4 and not set(train) & set(test)
    assert all(re.fullmatch(r"[0-9a-f]{9}\.jpg", n) for n in train + test)
    labels = pd.read_csv(dataset / "train.csv", keep_default_na=False)
    assert list(labels.columns) == ["ImageId", "ClassId", "EncodedPixels"]
    assert set(labels["ImageId"]) <= set(train) and labels["ClassId"].isin([1, 2, 3, 4]).all()
    assert (labels["EncodedPixels"] != "").all()
    tl = pd.read_csv(dataset / "test_labels.csv", keep_default_na=False)
    assert list(tl.columns) == ["ImageId", "ClassId", "EncodedPixels"] and set(
        tl["ImageId"]
    ) <= set(test)
    sub = pd.read_csv(dataset / "sample_submission.csv", keep_default_na=False)
    assert list(sub.columns) == ["ImageId", "EncodedPixels", "ClassId"]
    assert (
        sorted(sub["ImageId"]) == test
        and (sub["EncodedPixels"] == "1 409600").all()
        and (sub["ClassId"] == 0).all()
    )
    with Image.open(dataset / "train_images" / train[0]) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (1600, 256)
        rgb = np.asarray(im)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])


def test_labels_match_the_pictures(dataset: Path) -> None:
    # Where train.csv says "defect", the JPEG differs from its surroundings.
    labels = pd.read_csv(dataset / "train.csv", keep_default_na=False)
    assert len(labels) > 0
    for iid, c, enc in labels.itertuples(index=False):
        m = rle.decode(enc, (256, 1600)).astype(bool)
        gray = cv2.imread(str(dataset / "train_images" / iid), cv2.IMREAD_GRAYSCALE).astype(
            np.float64
        )
        ring = cv2.dilate(m.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(
            bool
        ) & ~cv2.dilate(m.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        inside, outside = gray[m], gray[ring]
        # a shift of the mean (classes 1, 3, 4 darker, 2 brighter) or much more texture (3)
        assert abs(inside.mean() - outside.mean()) > 8 or inside.std() > 1.5 * outside.std(), (
            iid,
            c,
        )


def test_same_seed_same_bytes_and_prefix(dataset: Path, tmp_path: Path) -> None:
    again = make_dataset(tmp_path / "again", 12, 4, seed=5, progress=False)
    small = make_dataset(tmp_path / "small", 5, 0, seed=5, progress=False)
    other = make_dataset(tmp_path / "other", 3, 0, seed=6, progress=False)
    for sub in ["train.csv", "test_labels.csv", "sample_submission.csv"]:
        assert (again / sub).read_bytes() == (dataset / sub).read_bytes()
    for p in (dataset / "train_images").iterdir():
        assert (again / "train_images" / p.name).read_bytes() == p.read_bytes()
    small_ids = {p.name for p in (small / "train_images").iterdir()}
    assert len(small_ids) == 5 and small_ids <= {
        p.name for p in (dataset / "train_images").iterdir()
    }
    assert not {p.name for p in (other / "train_images").iterdir()} & small_ids


def test_existing_dataset_needs_overwrite(tmp_path: Path) -> None:
    out = make_dataset(tmp_path / "d", 2, 1, seed=1, progress=False)
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        make_dataset(out, 2, 1, seed=2, progress=False)
    make_dataset(out, 1, 0, seed=2, progress=False, overwrite=True)
    assert len(list((out / "train_images").iterdir())) == 1
    assert len(list((out / "test_images").iterdir())) == 0


@pytest.mark.parametrize("split", ["train_images", "test_images"])
def test_stale_images_need_overwrite(tmp_path: Path, split: str) -> None:
    # An interrupted run leaves images but no train.csv; a new run must not mix them with its labels.
    out = tmp_path / "d"
    (out / split).mkdir(parents=True)
    for name in ("000000001.jpg", "000000002.JPG", "000000003.png"):
        (out / split / name).write_bytes(b"stale")
    (out / split / "notes.txt").write_text("kept")
    with pytest.raises(FileExistsError, match=rf"{split} already holds 3 image\(s\).*--overwrite"):
        make_dataset(out, 1, 0, seed=0, progress=False)
    assert not (out / "train.csv").exists()
    make_dataset(out, 1, 0, seed=0, progress=False, overwrite=True)
    assert (out / split / "notes.txt").read_text() == "kept"  # only image files are removed
    images = {d: sorted(p.name for p in (out / d).iterdir() if p.suffix != ".txt") for d in ("train_images", "test_images")}
    assert len(images["train_images"]) == 1 and images["test_images"] == []
    labels = pd.read_csv(out / "train.csv", keep_default_na=False)
    assert set(labels["ImageId"]) <= set(images["train_images"])


def test_empty_dataset(tmp_path: Path) -> None:
    out = make_dataset(tmp_path / "e", 0, 0, seed=0, progress=False)
    assert pd.read_csv(out / "train.csv").empty and pd.read_csv(out / "sample_submission.csv").empty


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((-1, 0, 0), ValueError, r"n_train must be an int >= 0, got -1"),
        ((1, 2.5, 0), TypeError, r"n_test must be an int >= 0, got float: 2.5"),
        ((1, True, 0), TypeError, r"n_test must be an int >= 0, got bool: True"),
        ((1, np.int64(1), -3), ValueError, r"seed must be an int >= 0, got -3"),
    ],
)
def test_make_dataset_bad_args(tmp_path: Path, args, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        make_dataset(tmp_path / "x", *args, progress=False)


def test_make_dataset_bad_quality_and_file_target(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quality must be an int in 1..100, got 0"):
        make_dataset(tmp_path / "q", 1, 0, quality=0, progress=False)
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="got a file"):
        make_dataset(f, 1, 0, progress=False)


def test_cli_synth(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(
        app, ["synth", str(out), "--train", "3", "--test", "1", "--seed", "2", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert len(list((out / "train_images").iterdir())) == 3 and (out / "train.csv").is_file()
    res = runner.invoke(app, ["synth", str(out), "--train", "3", "--test", "1", "--no-progress"])
    assert res.exit_code == 1 and "already holds a dataset" in res.output
    res = runner.invoke(app, ["synth", str(tmp_path / "neg"), "--train", "-2", "--no-progress"])
    assert res.exit_code == 1 and "n_train must be an int >= 0, got -2" in res.output


def test_cli_synth_refuses_stale_images(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    (out / "train_images").mkdir(parents=True)
    for i in range(3):
        (out / "train_images" / f"00000000{i}.jpg").write_bytes(b"stale")
    res = runner.invoke(app, ["synth", str(out), "--train", "2", "--test", "0", "--no-progress"])
    assert res.exit_code == 1, res.output
    assert re.fullmatch(r"error: \S*train_images already holds 3 image\(s\).*--overwrite\) to replace them\n", res.output)
    res = runner.invoke(app, ["synth", str(out), "--train", "2", "--test", "0", "--no-progress", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert len(list((out / "train_images").iterdir())) == 2
