"""Tests for steelfast.analysis.eda, eda_plots and eda_report: statistics against numpy, report files, real labels, CLI."""

from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from steelfast.analysis.eda import (
    area_fraction_stats,
    area_table,
    classes_per_image,
    defect_counts,
    reference_table,
    to_markdown,
)
from steelfast.analysis.eda_report import eda_report
from steelfast.cli import app
from steelfast.data.synth import make_dataset
from steelfast.labels import read_image_list

SHARED = Path(
    os.environ.get(
        "STEELFAST_SHARED_DATA",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "severstal",
    )
)
NPIX = 256 * 1600


def _describe_numpy(x: np.ndarray) -> list[float]:
    """count, mean, std (ddof 1), min, 25 %, 50 %, 75 %, max with plain numpy (linear quantiles)."""
    q = np.percentile(x, [25, 50, 75])
    return [x.size, x.mean(), x.std(ddof=1), x.min(), *q, x.max()]


@pytest.fixture()
def small() -> tuple[pd.DataFrame, list[str]]:
    labels = pd.DataFrame(
        {
            "ImageId": ["a.jpg", "a.jpg", "b.jpg", "c.jpg", "c.jpg", "c.jpg", "d.jpg"],
            "ClassId": [1, 3, 3, 2, 3, 4, 4],
            "EncodedPixels": [
                "1 10 20 5",
                "100 40",
                "7 1000",
                "3 3",
                "1 1 5 3 9 11",
                "",
                "50 409000",
            ],
        }
    )
    return labels, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]


def test_area_table(small) -> None:
    labels, ids = small
    areas = area_table(labels, ids)
    assert list(areas.index) == ids and list(areas.columns) == [1, 2, 3, 4]
    expected = [[15, 0, 40, 0], [0, 0, 1000, 0], [0, 3, 15, 0], [0, 0, 0, 409000], [0, 0, 0, 0]]
    np.testing.assert_array_equal(areas.to_numpy(), expected)
    assert areas.dtypes.eq(np.int64).all()
    # default image list: the images named in labels
    assert list(area_table(labels).index) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


def test_counts_and_classes_per_image(small) -> None:
    labels, ids = small
    areas = area_table(labels, ids)
    counts = defect_counts(areas)
    np.testing.assert_array_equal(counts["images"], [1, 1, 3, 1])
    np.testing.assert_allclose(counts["pct_of_images"], [20, 20, 60, 20])
    np.testing.assert_allclose(counts["pct_of_defects"], [100 / 6, 100 / 6, 50, 100 / 6])
    per = classes_per_image(areas)
    np.testing.assert_array_equal(per["images"], [1, 2, 2, 0, 0])
    np.testing.assert_allclose(per["pct_of_images"], [20, 40, 40, 0, 0])


@pytest.mark.parametrize("present_only", [False, True])
def test_area_fraction_stats_equal_numpy(small, present_only: bool) -> None:
    labels, ids = small
    areas = area_table(labels, ids)
    stats = area_fraction_stats(areas, present_only=present_only)
    assert list(stats.columns) == ["count", "mean", "std", "min", "25%", "50%", "75%", "max"]
    for c in (1, 2, 3, 4):
        x = areas[c].to_numpy() / NPIX
        if present_only:
            x = x[x > 0]
        if x.size > 1:
            np.testing.assert_allclose(stats.loc[c].to_numpy(), _describe_numpy(x), rtol=1e-12)
        else:
            assert stats.loc[c, "count"] == x.size


def test_area_table_rejects_unknown_images(small) -> None:
    labels, _ = small
    with pytest.raises(
        ValueError,
        match=r"labels name 2 images that are not in the image list, e.g. \['c.jpg', 'd.jpg'\]",
    ):
        area_table(labels, ["a.jpg", "b.jpg"])


def test_reference_table_and_markdown(small) -> None:
    labels, ids = small
    ref = reference_table(area_table(labels, ids))
    assert list(ref.index) == ["class 1", "class 2", "class 3", "class 4", "defect-free"]
    assert ref.loc["class 3", "real_pct_of_images"] == pytest.approx(40.98)
    md = to_markdown(ref)
    lines = md.strip().splitlines()
    assert (
        len(lines) == 7
        and lines[0].startswith("|  | pct_of_images")
        and lines[1].startswith("|---|---:")
    )


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("eda") / "d", 24, 0, seed=3, progress=False)


EXPECTED_FILES = [
    "defect_counts.csv", "defect_counts.md", "defect_counts.png",
    "classes_per_image.csv", "classes_per_image.md", "classes_per_image.png",
    "area_fraction_stats.csv", "area_fraction_stats.md", "area_fraction_present.csv",
    "area_fraction_present.md", "reference.csv", "reference.md",
    "area_fraction_hist.png", "samples.png", "report.html",
]  # fmt: skip


def test_report_files(synth_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "eda"
    report = eda_report(
        synth_set / "train.csv",
        out,
        images_dir=synth_set / "train_images",
        n_samples=3,
        progress=False,
    )
    assert report == out / "report.html"
    for name in EXPECTED_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    html = report.read_text()
    for png in [n for n in EXPECTED_FILES if n.endswith(".png")]:
        assert f"src='{png}'" in html
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 300
    # the stats in the CSV are those of the defect-free-inclusive image set
    stats = pd.read_csv(out / "area_fraction_stats.csv", index_col=0)
    assert (stats["count"] == 24).all()
    ids = sorted(p.name for p in (synth_set / "train_images").iterdir())
    labels = pd.read_csv(synth_set / "train.csv", keep_default_na=False)
    np.testing.assert_allclose(
        stats.to_numpy(), area_fraction_stats(area_table(labels, ids)).to_numpy(), rtol=1e-9
    )


def test_report_without_images(synth_set: Path, tmp_path: Path) -> None:
    report = eda_report(synth_set / "train.csv", tmp_path / "r", progress=False)
    assert report.is_file() and not (tmp_path / "r" / "samples.png").exists()
    with pytest.raises(ValueError, match="n_samples must be an int >= 0, got -1"):
        eda_report(synth_set / "train.csv", tmp_path / "r", n_samples=-1)


def test_cli_eda(synth_set: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(
        app,
        ["eda", str(synth_set / "train.csv"), "--images", str(synth_set / "train_images"), "--out", str(out),
         "--samples", "2", "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file() and "report.html" in res.output
    res = runner.invoke(app, ["eda", str(tmp_path / "missing.csv"), "--out", str(out)])
    assert res.exit_code == 1 and "missing.csv" in res.output


@pytest.mark.skipif(
    not (SHARED / "train_partial.csv").is_file(), reason="shared Severstal labels not available"
)
def test_real_labels_statistics_equal_independent_numpy(tmp_path: Path) -> None:
    ids = read_image_list(SHARED / "train_partial_images.csv")
    # Independent computation: sum the run lengths of each RLE straight from the CSV text.
    area = {iid: np.zeros(4, np.int64) for iid in ids}
    with open(SHARED / "train_partial.csv", newline="") as f:
        for row in csv.DictReader(f):
            runs = np.array(row["EncodedPixels"].split(), dtype=np.int64)
            area[row["ImageId"]][int(row["ClassId"]) - 1] += runs[1::2].sum()
    frac = np.stack([area[i] for i in ids]) / NPIX

    report = eda_report(
        SHARED / "train_partial.csv", tmp_path, image_ids=ids, n_samples=0, progress=False
    )
    assert report.is_file()
    stats = pd.read_csv(tmp_path / "area_fraction_stats.csv", index_col=0)
    for c in range(4):
        np.testing.assert_allclose(
            stats.loc[c + 1].to_numpy(), _describe_numpy(frac[:, c]), rtol=1e-9, atol=0
        )
    counts = pd.read_csv(tmp_path / "defect_counts.csv", index_col=0)
    np.testing.assert_array_equal(counts["images"].to_numpy(), (frac > 0).sum(axis=0))
    per = pd.read_csv(tmp_path / "classes_per_image.csv", index_col=0)
    np.testing.assert_array_equal(
        per["images"].to_numpy(), np.bincount((frac > 0).sum(axis=1), minlength=5)
    )
    assert len(ids) == 9162 and per["images"].sum() == 9162


def test_report_notes_images_assumed_defect_free(small, tmp_path: Path, caplog) -> None:
    labels, ids = small  # e.jpg has no rows
    with caplog.at_level("WARNING", logger="steelfast.analysis.eda_report"):
        report = eda_report(labels, tmp_path / "r", image_ids=ids, progress=False)
    note = "1 of 5 images (from the image list) have no rows in the labels and are assumed defect-free"
    assert [r.levelname for r in caplog.records] == ["WARNING"] and note in caplog.text
    assert f"<b>Note:</b> {note}" in report.read_text()
    # Every image has rows (and no list or folder widens the set): no assumption, no note.
    caplog.clear()
    with caplog.at_level("WARNING", logger="steelfast.analysis.eda_report"):
        report = eda_report(labels, tmp_path / "q", progress=False)
    assert caplog.records == [] and "Note:" not in report.read_text()


def test_report_notes_defect_free_images_of_the_folder(synth_set: Path, tmp_path: Path, caplog) -> None:
    labels = pd.read_csv(synth_set / "train.csv")
    n_rowless = 24 - labels["ImageId"].nunique()
    assert n_rowless > 0
    with caplog.at_level("WARNING", logger="steelfast.analysis.eda_report"):
        report = eda_report(
            labels, tmp_path / "r", images_dir=synth_set / "train_images", n_samples=0, progress=False
        )
    note = f"{n_rowless} of 24 images (from the image folder) have no rows"
    assert note in caplog.text and note in report.read_text()


def test_cli_eda_prints_the_defect_free_assumption(synth_set: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        ["eda", str(synth_set / "train.csv"), "--images", str(synth_set / "train_images"),
         "--out", str(tmp_path / "cli"), "--samples", "0", "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "assumed defect-free" in res.output


# ---- sample images that cannot be drawn are skipped with a warning, the report is still written ----------


def _bad_zero(path: Path) -> None:
    path.write_bytes(b"")


def _bad_text(path: Path) -> None:
    path.write_text("not a jpeg")


def _bad_size(path: Path) -> None:  # half the size of the images the labels describe
    Image.fromarray(np.full((128, 800), 90, np.uint8)).save(path, quality=90)


BAD_SAMPLES = [
    (_bad_zero, r"sample skipped: cannot read image \S*bad\.jpg: the file is empty"),
    (_bad_text, r"sample skipped: cannot read image \S*bad\.jpg"),
    (_bad_size, r"sample skipped: \S*bad\.jpg is 800x128, and its label runs do not fit that size \(class 3: .*102400"),
]


def _with_bad_sample(synth_set: Path, tmp_path: Path, make_bad, n_good: int) -> tuple[pd.DataFrame, Path]:
    labels = pd.read_csv(synth_set / "train.csv", keep_default_na=False)
    folder = tmp_path / "images"
    folder.mkdir()
    good = sorted(set(labels["ImageId"]))[:n_good]
    for iid in good:
        shutil.copy(synth_set / "train_images" / iid, folder / iid)
    make_bad(folder / "bad.jpg")
    bad = pd.DataFrame({"ImageId": ["bad.jpg"], "ClassId": [3], "EncodedPixels": ["300000 10"]})
    return pd.concat([labels[labels["ImageId"].isin(good)], bad], ignore_index=True), folder


@pytest.mark.parametrize(("make_bad", "warning"), BAD_SAMPLES)
@pytest.mark.parametrize("n_good", [2, 0])
def test_report_skips_sample_images_it_cannot_draw(
    synth_set: Path, tmp_path: Path, caplog, make_bad, warning: str, n_good: int
) -> None:
    labels, folder = _with_bad_sample(synth_set, tmp_path, make_bad, n_good)
    with caplog.at_level("WARNING", logger="steelfast.analysis.eda_plots"):
        report = eda_report(labels, tmp_path / "r", images_dir=folder, n_samples=10, progress=False)
    skipped = [r.getMessage() for r in caplog.records if r.name == "steelfast.analysis.eda_plots"]
    assert len(skipped) == 1 and re.search(warning, skipped[0]), skipped
    assert report.is_file() and (tmp_path / "r" / "area_fraction_hist.png").is_file()
    # the good images are drawn; with none left there is no samples figure at all
    assert (tmp_path / "r" / "samples.png").is_file() == (n_good > 0)
    assert ("src='samples.png'" in report.read_text()) == (n_good > 0)


@pytest.mark.parametrize(("make_bad", "warning"), BAD_SAMPLES)
def test_cli_eda_notes_skipped_samples(synth_set: Path, tmp_path: Path, make_bad, warning: str) -> None:
    labels, folder = _with_bad_sample(synth_set, tmp_path, make_bad, 2)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "cli"
    res = CliRunner().invoke(
        app,
        ["eda", str(tmp_path / "labels.csv"), "--images", str(folder), "--out", str(out), "--samples", "10",
         "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    notes = [line for line in res.output.splitlines() if line.startswith("note: EDA: sample skipped")]
    assert len(notes) == 1 and re.search(warning, notes[0]), res.output
    assert (out / "report.html").is_file() and (out / "samples.png").is_file()
