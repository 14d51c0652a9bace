"""The Ray Data engine against the local engine, on a real local Ray runtime (steelfast.inference.ray_engine)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from steelfast import cli
from steelfast.checkpoint import save_checkpoint
from steelfast.inference.pipeline import segment_folder
from steelfast.inference.ray_engine import import_ray, segment_with_ray
from steelfast.inference.run import segment_to_file
from steelfast.models import UNet

SIZE = (64, 128)
POST = {"thresholds": [0.5, 0.45, 0.55, 0.5], "min_areas": [0, 20, 0, 50]}

pytestmark = [
    # Ray Data's own DataContext assigns three of its deprecated fields when it is first created, inside Ray.
    pytest.mark.filterwarnings("ignore:`use_push_based_shuffle` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`use_polars` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`use_arrow_tensor_v2` is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray", reason="the Ray engine needs pip install 'steelfast[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(5)
    model = UNet(widths=(4, 4, 4, 4, 4), bottleneck=8, decoder_widths=(4, 4, 4, 4, 4)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model, {"postprocess": POST})


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 images, two of them bad: one is not an image, one has another size."""
    d = tmp_path_factory.mktemp("forty")
    rng = np.random.default_rng(7)
    for i in range(40):
        noise = rng.integers(0, 256, SIZE, dtype=np.uint8)
        cv2.imwrite(str(d / f"img{i:02d}.jpg"), cv2.GaussianBlur(noise, (7, 7), 3))
    (d / "img13.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    cv2.imwrite(str(d / "img27.jpg"), np.full((32, 48), 90, np.uint8))
    return d


def test_ray_rows_equal_local_rows_on_40_images_with_two_bad_files(ray_runtime, checkpoint: Path, folder: Path) -> None:
    local = segment_folder(folder, checkpoint, image_size=SIZE, compile=False)
    # Two actors, each with the local engine's thread count: the same computation, so the same rows.
    result = segment_with_ray(folder, checkpoint, image_size=SIZE, concurrency=2, batch_size=None,
                              model_threads=torch.get_num_threads())
    got = result.to_pandas()
    assert len(got) == 4 * 38 and (got["EncodedPixels"] != "").any()  # the fixture does segment something
    pd.testing.assert_frame_equal(got, local)  # row for row, dtypes included
    assert result.failures == local.attrs["failures"] and set(result.failures) == {"img13.jpg", "img27.jpg"}
    assert result.failures["img27.jpg"] == "size 32x48, expected 64x128"
    assert result.rows.count() == len(local)


def test_resized_images_carry_the_same_notes(ray_runtime, checkpoint: Path, folder: Path) -> None:
    local = segment_folder(folder, checkpoint, image_size=SIZE, other_sizes="resize", compile=False)
    result = segment_with_ray(folder, checkpoint, image_size=SIZE, other_sizes="resize")
    pd.testing.assert_frame_equal(result.to_pandas(), local)
    assert result.notes == local.attrs["notes"] == {"img27.jpg": local.attrs["notes"]["img27.jpg"]}


def test_a_dataset_of_bytes_and_paths_gives_the_same_rows(ray_runtime, checkpoint: Path, folder: Path) -> None:
    files = sorted(str(p) for p in folder.iterdir())
    dataset = ray_runtime.data.read_binary_files(files, include_paths=True)
    result = segment_with_ray(dataset, checkpoint, image_size=SIZE, compile=False)
    local = segment_folder(folder, checkpoint, image_size=SIZE, compile=False)
    pd.testing.assert_frame_equal(result.to_pandas(), local)
    assert set(result.failures) == {"img13.jpg", "img27.jpg"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_written_output_equals_the_local_file(ray_runtime, checkpoint: Path, folder: Path, tmp_path: Path,
                                              suffix: str) -> None:
    local = segment_to_file(folder, tmp_path / f"local{suffix}", checkpoint, progress=False, image_size=SIZE)
    summary = segment_with_ray(folder, checkpoint, output=tmp_path / f"ray{suffix}", image_size=SIZE)
    if suffix == ".csv":
        assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    else:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ray.parquet"),
                                      pd.read_parquet(tmp_path / "local.parquet"))
    assert summary.failures_file.read_text() == local.failures_file.read_text()
    assert (summary.images, summary.defects, summary.failures) == (local.images, local.defects, local.failures)
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / f"ray{suffix}.partial").exists()
    with pytest.raises(FileExistsError, match=f"ray{suffix} exists; pass overwrite=True"):
        segment_with_ray(folder, checkpoint, output=tmp_path / f"ray{suffix}", image_size=SIZE)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((), {"concurrency": 0}, ValueError, "concurrency must be a positive int, got 0"),
        ((), {"batch_size": 2.5}, TypeError, "batch_size must be a positive int, got float: 2.5"),
        ((), {"num_gpus": -1}, ValueError, "num_gpus must be a non-negative number, got -1"),
        ((), {"other_sizes": "crop"}, ValueError, "other_sizes must be 'skip' or 'resize', got 'crop'"),
        ((), {"output": "x.jsonl"}, ValueError, "the Ray engine writes csv or parquet submissions, got format 'json'"),
        ((), {"output": "x.txt"}, ValueError, "unknown output format"),
        ((), {"progress": "no"}, TypeError, "progress must be a bool, got 'no'"),
    ],
)
def test_bad_options_are_refused_before_ray_starts(checkpoint: Path, folder: Path, tmp_path: Path, args: tuple,
                                                   kwargs: dict, error: type, match: str) -> None:
    if "output" in kwargs:
        kwargs["output"] = tmp_path / kwargs["output"]
    with pytest.raises(error, match=match):
        segment_with_ray(folder, checkpoint, *args, **kwargs)


@pytest.mark.parametrize(
    ("source", "error", "match"),
    [
        (42, TypeError, "paths_or_dataset must be a folder, a list of image paths or a Ray Dataset"),
        ("missing-folder", FileNotFoundError, "image folder not found"),
        ([], ValueError, "no image paths given"),
    ],
)
def test_bad_inputs_are_refused(ray_runtime, checkpoint: Path, tmp_path: Path, source: object, error: type,
                                match: str) -> None:
    if source == "missing-folder":
        source = tmp_path / "missing"
    with pytest.raises(error, match=match):
        segment_with_ray(source, checkpoint)


def test_a_dataset_without_bytes_and_paths_is_refused(ray_runtime, checkpoint: Path) -> None:
    with pytest.raises(ValueError, match=r"a dataset must have 'bytes' and 'path' columns.*got columns \['id'\]"):
        segment_with_ray(ray_runtime.data.range(3), checkpoint)


def test_missing_ray_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an interpreter without Ray sees
    with pytest.raises(ImportError, match=r"pip install 'steelfast\[ray\]'"):
        import_ray()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("source", ["folder", "dataset"])
@pytest.mark.parametrize("progress", [True, False])
def test_progress_false_quiets_this_run_only(ray_runtime, checkpoint: Path, folder: Path, progress: bool,
                                             source: str) -> None:
    context = ray_runtime.data.DataContext.get_current()
    before = (context.enable_progress_bars, context.print_on_execution_start)
    given = folder
    if source == "dataset":  # the caller's own dataset: its context is shared by what derives from it
        given = ray_runtime.data.read_binary_files(sorted(str(p) for p in folder.iterdir()), include_paths=True)
        own = (given.context.enable_progress_bars, given.context.print_on_execution_start)
    records = _Records()
    log = logging.getLogger("ray.data")  # Ray Data's loggers do not propagate past it
    log.addHandler(records)
    try:
        result = segment_with_ray(given, checkpoint, image_size=SIZE, compile=False, progress=progress)
    finally:
        log.removeHandler(records)
    assert len(result.to_pandas()) == 4 * 38
    started = [m for m in records.messages if m.startswith("Starting execution of Dataset")]
    assert bool(started) == progress, records.messages
    assert (context.enable_progress_bars, context.print_on_execution_start) == before  # the process's default
    if source == "dataset":
        assert (given.context.enable_progress_bars, given.context.print_on_execution_start) == own


@pytest.mark.parametrize("progress", ["--progress", "--no-progress"])
def test_cli_engine_ray_no_progress_prints_no_ray_info_lines(checkpoint: Path, tmp_path: Path, progress: str) -> None:
    """In its own process, where the command starts Ray itself: with --no-progress the summary and none
    of Ray's INFO lines, which the same run with --progress does print."""
    pytest.importorskip("ray", reason="the Ray engine needs pip install 'steelfast[ray]'")
    folder = tmp_path / "two"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"im{i}.jpg"), np.full((256, 1600), 100 + i, np.uint8))
    done = subprocess.run([sys.executable, "-m", "steelfast", "segment", str(folder), "-o", str(tmp_path / "s.csv"),
                           "--model", str(checkpoint), "--engine", "ray", progress],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("2 images -> "), done.stdout
    noisy = [line for line in (done.stdout + done.stderr).splitlines()
             if re.search(r"\bINFO\b", line) or "Progress bars disabled" in line]
    if progress == "--no-progress":
        assert not noisy, noisy
    else:
        assert any("Starting execution of Dataset" in line for line in noisy), done.stdout + done.stderr


@pytest.mark.parametrize(
    ("make", "args", "match"),
    [
        ("output", [], r"error: .*s\.csv exists; pass overwrite=True \(CLI: --overwrite\)"),
        ("", ["--format", "coco"], r"error: the Ray engine writes csv or parquet submissions, got format 'coco'"),
        ("", ["--format", "xlsx"], r"error: the Ray engine writes csv or parquet submissions, got format 'xlsx'"),
        ("empty", [], r"error: no images in "),
    ],
)
def test_cli_engine_ray_refuses_before_ray_starts(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  make: str, args: list, match: str) -> None:
    ray = pytest.importorskip("ray", reason="the Ray engine needs pip install 'steelfast[ray]'")
    folder = tmp_path / "imgs"
    folder.mkdir()
    if make != "empty":
        cv2.imwrite(str(folder / "a.jpg"), np.full((256, 1600), 90, np.uint8))
    if make == "output":
        (tmp_path / "s.csv").write_text("ImageId,EncodedPixels,ClassId\n")

    def no_start(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "init", no_start)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    result = CliRunner().invoke(cli.app, ["segment", str(folder), "-o", str(tmp_path / "s.csv"), "--model",
                                          str(checkpoint), "--engine", "ray", "--no-progress", *args])
    assert result.exit_code == 1, result.output
    assert re.search(match, result.output), result.output


def test_cli_engine_ray_writes_what_the_local_engine_writes(ray_runtime, checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "kaggle"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        noise = rng.integers(0, 256, (256, 1600), np.uint8)
        cv2.imwrite(str(folder / f"im{i}.jpg"), cv2.GaussianBlur(noise, (7, 7), 3))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    common = ["segment", str(folder), "--model", str(checkpoint), "--backend", "torch", "--no-progress"]
    runner = CliRunner()
    local = runner.invoke(cli.app, [*common, "-o", str(tmp_path / "local.csv")])
    ray = runner.invoke(cli.app, [*common, "-o", str(tmp_path / "ray.csv"), "--engine", "ray"])
    assert local.exit_code == ray.exit_code == 0, ray.output
    assert "failed: broken.jpg: cannot read image" in ray.output and "3 images -> " in ray.output
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert ray_runtime.is_initialized()  # the command leaves a runtime it did not start alone
    refused = runner.invoke(cli.app, [*common, "-o", str(tmp_path / "ray.csv"), "--engine", "ray", "--resume"])
    assert refused.exit_code == 1 and refused.output.startswith("error: --engine ray writes a submission in one go")
    unknown = runner.invoke(cli.app, [*common, "-o", str(tmp_path / "x.csv"), "--engine", "spark"])
    assert unknown.exit_code == 1 and "error: --engine must be local or ray, got 'spark'" in unknown.output
    assert os.path.exists(tmp_path / "ray.csv")
