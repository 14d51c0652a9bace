"""The `steelfast segment` / `steelfast-segment` and `steelfast export` commands, driven by a CLI runner."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from steelfast import cli
from steelfast.checkpoint import save_checkpoint
from steelfast.inference.errors import BackendUnavailableError, OutputBusyError, ResumeMismatchError
from steelfast.models import UNet
from steelfast.rle import decode

runner = CliRunner()


def tiny(seed: int) -> UNet:
    torch.manual_seed(seed)
    return UNet(widths=(4, 4, 4, 4, 4), bottleneck=8, decoder_widths=(4, 4, 4, 4, 4))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", tiny(0))


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "other.safetensors", tiny(1))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):  # the Kaggle size: the command writes 256x1600 coordinates
        cv2.imwrite(str(d / f"im{i}.jpg"), rng.integers(0, 256, (256, 1600), dtype=np.uint8))
    (d / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return d


def run(*args: str) -> object:
    return runner.invoke(cli.app, ["segment", *args, "--backend", "torch", "--no-progress"])


def test_segment_end_to_end(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub.csv"
    result = run(str(folder), "-o", str(out), "--model", str(checkpoint), "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "4 images -> " in result.output and "images/s" in result.output and "1 failures" in result.output
    assert "failed: broken.jpg" in result.output
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 16 and sorted(set(table["ImageId"])) == [f"im{i}.jpg" for i in range(4)]
    assert (tmp_path / "sub.csv.failures.csv").is_file()


@pytest.mark.parametrize("model", ["synthetic-unet", "default"])
def test_segment_takes_a_bundled_models_name(folder: Path, tmp_path: Path, model: str) -> None:
    from steelfast.model_files import bundled_checkpoint_path, model_file_sha256

    out = tmp_path / "sub.csv"
    result = run(str(folder), "-o", str(out), "--model", model)
    assert result.exit_code == 0, result.output
    assert "4 images -> " in result.output
    record = json.loads((tmp_path / "sub.csv.run.json").read_text())
    assert json.dumps(model_file_sha256(bundled_checkpoint_path(model))) in json.dumps(record)


def test_segment_parquet_resume_tta(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="writing parquet needs pyarrow")
    out = tmp_path / "sub.data"
    first = run(str(folder), "-o", str(out), "--model", str(checkpoint), "--format", "parquet", "--tta")
    assert first.exit_code == 0, first.output
    again = run(str(folder), "-o", str(out), "--model", str(checkpoint), "--format", "parquet", "--tta", "--resume")
    assert again.exit_code == 0, again.output
    assert "(4 resumed)" in again.output
    assert len(pd.read_parquet(out)) == 16


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{empty}", "--model", "{ckpt}"], "error: no images in"),
        (["{folder}", "--model", "{tmp}/missing.safetensors"], "error: model not found:"),
        (["{folder}", "--model", "{ckpt}", "--backend", "nope"], "error: unknown backend 'nope'"),
        (["{folder}", "--model", "{ckpt}", "-o", "{tmp}/out.txt"], "error: unknown output format"),
        (["{tmp}/nowhere", "--model", "{ckpt}"], "error: image folder not found"),
        (["{folder}", "--model", "{ckpt}", "-o", "{tmp}"], "error: the output {tmp} is a folder"),
        (["{folder}", "--model", "{ckpt}", "-o", "{ckpt}/s.csv"], "error: cannot write {ckpt}/s.csv: {ckpt} is a file"),
        (["{folder}", "--model", "{ckpt}", "-o", "{tmp}/old.csv"], "error: {tmp}/old.csv exists; pass overwrite=True (CLI: --overwrite)"),
        (["{folder}", "--model", "{ckpt}", "-o", "{tmp}/s.csv", "--other-sizes", "stretch"],
         "error: --other-sizes must be one of 'skip', 'resize', got 'stretch'"),
        (["{folder}", "--model", "{ckpt}", "--workers", "0"], "error: --workers must be a positive int, got 0"),
        (["{folder}", "--model", "{ckpt}", "--batch-size", "0"], "error: --batch-size must be a positive int, got 0"),
        (["{folder}", "--model", "{ckpt}", "--max-pixels", "-1"], "error: --max-pixels must be a positive int, got -1"),
        (["{folder}", "--model", "{ckpt}", "--concurrency", "4", "--num-gpus", "1"],
         "error: --concurrency, --num-gpus are options of --engine ray, not of --engine local"),
        (["{folder}", "--model", "{ckpt}", "--ray-address", "auto"],
         "error: --ray-address is an option of --engine ray, not of --engine local"),
        (["{folder}", "--model", "{ckpt}", "--engine", "ray", "--workers", "4"],
         "error: --workers is an option of --engine local, not of --engine ray"),
        (["{folder}", "--model", "{ckpt}", "--engine", "ray", "--concurrency", "0"],
         "error: --concurrency must be a positive int, got 0"),
        (["{folder}", "--model", "{ckpt}", "--engine", "ray", "--num-gpus", "-1"], "error: --num-gpus must be >= 0, got -1"),
        pytest.param(["{folder}", "--model", "{ckpt}", "-o", "{tmp}/s.csv", "--backend", "tensorrt"],
                     "error: the tensorrt backend needs the tensorrt package: pip install 'steelfast[tensorrt]'",
                     marks=pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed")),
    ],
)
def test_segment_errors_are_one_line(checkpoint: Path, folder: Path, tmp_path: Path, args: list, message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "old.csv").write_text("ImageId,ClassId,EncodedPixels\n")
    values = {"empty": tmp_path / "empty", "ckpt": checkpoint, "tmp": tmp_path, "folder": folder}
    message = message.format(**values)
    argv = [a.format(**values) for a in args]
    result = runner.invoke(cli.app, ["segment", *argv, "--no-progress"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.output
    assert "Traceback" not in result.output


def test_missing_default_model(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import steelfast.model_files

    monkeypatch.setattr(steelfast.model_files, "default_checkpoint_path", lambda: tmp_path / "default.safetensors")
    result = runner.invoke(cli.app, ["segment", str(folder), "-o", str(tmp_path / "s.csv"), "--no-progress"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: the default model") and "--model" in result.output


def test_every_option_has_help() -> None:
    import typer.main

    for name in ("segment", "export"):
        command = next(c for c in cli.app.registered_commands if c.callback.__name__ == name)
        click_cmd = typer.main.get_command_from_info(command, pretty_exceptions_short=True, rich_markup_mode=None)
        assert all(p.help for p in click_cmd.params), name


@pytest.mark.parametrize(
    ("entry", "argv"),
    [
        ("main", ["steelfast", "--version"]),
        ("main", ["steelfast", "segment", "--version"]),
        ("segment_main", ["steelfast-segment", "--version"]),
        ("segment_main", ["steelfast-segment", "/no/such/folder", "--workers", "0", "--version"]),  # eager
        ("train_main", ["steelfast-train", "--version"]),
    ],
)
def test_version_prints_the_package_version(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                            entry: str, argv: list) -> None:
    import steelfast

    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exited:
        getattr(cli, entry)()
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"steelfast {steelfast.__version__}\n"


@pytest.mark.parametrize(
    ("entry", "argv", "usage", "error"),
    [
        ("main", ["steelfast", "segment", "--bogus"], "Usage: steelfast segment [OPTIONS] {INPUT_DIR}",
         "Error: No such option: --bogus"),
        ("segment_main", ["steelfast-segment", "x", "--workers", "two"], "Usage: steelfast-segment [OPTIONS]",
         "Error: Invalid value for '--workers'"),
        ("train_main", ["steelfast-train"], "Usage: steelfast-train [OPTIONS] {DATA_DIR}",
         "Error: Missing argument 'DATA_DIR'."),
    ],
)
def test_usage_errors_are_plain_lines_with_exit_code_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                                       entry: str, argv: list, usage: str, error: str) -> None:
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exited:
        getattr(cli, entry)()
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.startswith(usage) and error in err.splitlines()[-1], err
    assert not set(err) & set("╭╮╰╯│─"), err  # no box drawn around it


def test_segment_main_runs_the_segment_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                               checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.argv", ["steelfast-segment", str(folder), "-o", str(tmp_path / "s.csv"),
                                     "--model", str(checkpoint), "--no-progress"])
    with pytest.raises(SystemExit) as exited:
        cli.segment_main()
    assert exited.value.code == 0
    assert " images -> " in capsys.readouterr().out and (tmp_path / "s.csv").is_file()


def test_export_command(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = runner.invoke(cli.app, ["export", str(checkpoint), "--onnx", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and f"wrote {out}" in result.output
    bad = runner.invoke(cli.app, ["export", str(checkpoint), "--onnx", str(out), "--opset", "11"])
    assert bad.exit_code == 1 and "opset must be an int >= 17, got 11" in bad.output


@pytest.mark.parametrize(("args", "message"), [
    (["--max-batch", "64"], "error: --max-batch sets up the TensorRT engine: add --tensorrt"),
    (["--hardware-compatibility", "ampere_plus", "--version-compatible"],
     "error: --hardware-compatibility, --version-compatible/--no-version-compatible set up the TensorRT engine: "
     "add --tensorrt"),
    (["--tensorrt", "--max-batch", "0"], "error: --max-batch must be a positive int, got 0"),
    (["--tensorrt", "--hardware-compatibility", "foo"],
     "error: --hardware-compatibility must be one of 'none', 'ampere_plus', 'same_compute_capability', got 'foo'"),
])
def test_export_engine_options_checked_before_the_onnx_file(checkpoint: Path, tmp_path: Path, args: list,
                                                            message: str) -> None:
    out = tmp_path / "m.onnx"
    result = runner.invoke(cli.app, ["export", str(checkpoint), "--onnx", str(out), *args])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [message], result.output
    assert not out.exists()


# ---- issue 13: the main job, hardened ------------------------------------------------------------


def interrupt_model_after(monkeypatch: pytest.MonkeyPatch, calls: int) -> None:
    """A Ctrl-C (KeyboardInterrupt) once the model has run ``calls`` batches."""
    from steelfast.inference.segmenter import Segmenter

    real = Segmenter.predict_proba
    count = {"n": 0}

    def run(self: Segmenter, grays: list) -> list:
        count["n"] += 1
        if count["n"] > calls:
            raise KeyboardInterrupt
        return real(self, grays)

    monkeypatch.setattr(Segmenter, "predict_proba", run)


def lines(result: object) -> list[str]:
    return result.output.strip().splitlines()


def test_ctrl_c_keeps_the_journal_and_says_how_to_resume(
    checkpoint: Path, other_checkpoint: Path, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, journal = tmp_path / "sub.csv", tmp_path / "sub.csv.partial"
    interrupt_model_after(monkeypatch, 3)
    result = run(str(folder), "-o", str(out), "--model", str(checkpoint), "--batch-size", "1")
    monkeypatch.undo()
    assert result.exit_code == 130, result.output
    assert lines(result) == [
        f"interrupted: finished images are kept in {journal}; run the same command with --resume to continue"
    ]
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert "run" in entries[0] and {e["id"] for e in entries[1:]} >= {"broken.jpg", "im0.jpg"}
    assert not out.exists()

    # Another model is refused, saying what differs; the same one finishes the run.
    other = run(str(folder), "-o", str(out), "--model", str(other_checkpoint), "--resume")
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:12]
    other_sha = hashlib.sha256(other_checkpoint.read_bytes()).hexdigest()[:12]
    assert other.exit_code == 1
    assert lines(other) == [
        f"error: cannot resume {out}: it was started with another model or options (model_sha256 {sha} before, "
        f"{other_sha} now); resume with the same ones, or start over with overwrite=True (CLI: --overwrite)"
    ]
    done = run(str(folder), "-o", str(out), "--model", str(checkpoint), "--resume")
    assert done.exit_code == 0, done.output
    assert "4 images (" in done.output and "resumed)" in done.output and "1 failures" in done.output
    assert sorted(set(pd.read_csv(out)["ImageId"])) == [f"im{i}.jpg" for i in range(4)]


def test_overwrite_replaces_an_existing_output(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub.csv"
    assert run(str(folder), "-o", str(out), "--model", str(checkpoint)).exit_code == 0
    again = run(str(folder), "-o", str(out), "--model", str(checkpoint))
    assert again.exit_code == 1 and f"error: {out} exists; pass overwrite=True (CLI: --overwrite)" in again.output
    replaced = run(str(folder), "-o", str(out), "--model", str(checkpoint), "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert "4 images -> " in replaced.output and "resumed" not in replaced.output


def test_an_onnx_model_runs_with_the_default_backend(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="running ONNX needs onnxruntime")
    onnx = tmp_path / "m.onnx"
    assert runner.invoke(cli.app, ["export", str(checkpoint), "--onnx", str(onnx)]).exit_code == 0
    out = tmp_path / "sub.csv"
    result = runner.invoke(cli.app, ["segment", str(folder), "-o", str(out), "--model", str(onnx), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "4 images -> " in result.output
    assert json.loads((tmp_path / "sub.csv.run.json").read_text())["run"]["backend"] in ("onnxruntime", "tensorrt")


@pytest.mark.parametrize("other_sizes", [None, "skip", "resize"])
def test_other_sizes_are_skipped_or_resized(checkpoint: Path, folder: Path, tmp_path: Path, other_sizes) -> None:
    cv2.imwrite(str(folder / "small.png"), np.full((128, 800), 120, np.uint8))
    out = tmp_path / "sub.csv"
    flags = ["--other-sizes", other_sizes] if other_sizes else []
    result = run(str(folder), "-o", str(out), "--model", str(checkpoint), *flags)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, keep_default_na=False)
    if other_sizes == "resize":
        assert "warning: small.png: resized from 128x800 to 256x1600; its masks are in 256x1600 coordinates" in result.output
        assert "5 images (1 resized) -> " in result.output
        for text in table.loc[table["ImageId"] == "small.png", "EncodedPixels"]:
            assert decode(text, (256, 1600)).shape == (256, 1600)
    else:
        assert "failed: small.png: size 128x800, expected 256x1600" in result.output
        assert "small.png" not in set(table["ImageId"]) and "2 failures" in result.output


@pytest.mark.parametrize(("flags", "images"), [([], 4), (["--max-pixels", "409599"], 0), (["--max-pixels", "409600"], 4)])
def test_max_pixels_flag(checkpoint: Path, folder: Path, tmp_path: Path, flags: list, images: int) -> None:
    result = run(str(folder), "-o", str(tmp_path / "s.csv"), "--model", str(checkpoint), *flags)
    assert result.exit_code == (1 if images == 0 else 0), result.output  # every image failed: an error
    assert f"{images} images -> " in result.output
    if images == 0:
        assert "failed: im0.jpg: cannot read image" in result.output and "256x1600 = 409600 pixels, more than max_pixels=409599" in result.output
        assert result.output.strip().splitlines()[-1] == (
            f"error: none of the 5 images could be segmented ({tmp_path / 's.csv'} holds no image)")


def test_max_pixels_default_is_the_library_default() -> None:
    import inspect

    from steelfast.images import MAX_PIXELS

    assert inspect.signature(cli.segment).parameters["max_pixels"].default.default == MAX_PIXELS


def test_a_busy_output_is_one_line(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl", reason="holds the lock with flock")
    out = tmp_path / "sub.csv"
    with open(tmp_path / "sub.csv.lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("4242\n")
        holder.flush()
        result = run(str(folder), "-o", str(out), "--model", str(checkpoint))
    assert result.exit_code == 1
    assert lines(result) == [
        f"error: another run (pid 4242) is writing {out}; wait for it to finish or choose another output "
        f"(lock file {tmp_path / 'sub.csv.lock'})"
    ]


COMMANDS = {  # command line, library function it calls
    "synth": (["synth", "{tmp}/data"], "steelfast.cli.data.make_dataset"),
    "eda": (["eda", "{tmp}/labels.csv"], "steelfast.cli.data.eda_report"),
    "overlay": (["overlay", "{tmp}/image.png"], "steelfast.cli.data.overlay_file"),
    "train": (["train", "{tmp}", "--out", "{tmp}/run"], "steelfast.training.loop.train"),
    "export": (["export", "{ckpt}", "--onnx", "{tmp}/m.onnx"], "steelfast.inference.export.export_onnx"),
    "segment": (["segment", "{tmp}", "--model", "{ckpt}", "-o", "{tmp}/s.csv"], "steelfast.inference.run.segment_to_file"),
}


def invoke_raising(command: str, exc: BaseException, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    argv, target = COMMANDS[command]

    def fail(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(target, fail)
    return runner.invoke(cli.app, [a.format(tmp=tmp_path, ckpt=checkpoint) for a in argv])


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    "exc",
    [ValueError("bad value 7"), FileNotFoundError("no such file x.csv"), ImportError("needs onnx: pip install onnx"),
     BackendUnavailableError("no CUDA device"), OutputBusyError("another run is writing s.csv"),
     ResumeMismatchError("cannot resume s.csv")],
    ids=lambda e: type(e).__name__,
)
def test_every_command_reports_a_domain_error_in_one_line(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, exc: Exception
) -> None:
    result = invoke_raising(command, exc, checkpoint, tmp_path, monkeypatch)
    assert result.exit_code == 1
    assert result.output == f"error: {exc}\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("exc", [TypeError("a bug"), RuntimeError("a bug"), AttributeError("a bug"), KeyError("a bug")],
                         ids=lambda e: type(e).__name__)
def test_a_bug_keeps_its_traceback(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, exc: Exception
) -> None:
    result = invoke_raising(command, exc, checkpoint, tmp_path, monkeypatch)
    assert result.exit_code == 1
    assert result.exception is exc and result.exc_info[2] is not None  # raised, with its traceback
    assert "error:" not in result.output


def test_a_failed_image_is_reported_once(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    # A real process: pytest's log capture would hide Python's last-resort handler, which printed
    # the library's "skipping" warning beside the command's own "failed:" line.
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "steelfast", "segment", str(folder), "-o", str(tmp_path / "s.csv"),
                           "--model", str(checkpoint), "--backend", "torch", "--no-progress"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("failed: broken.jpg") == 1 and "skipping" not in done.stderr, done.stderr


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bin.csv", b"\xff\xfe\x00\x01", r"error: image list \S*bin.csv is not UTF-8 text \(byte b'\\xff' at offset 0\)\n"),
    ("quote.csv", b'ImageId\n"a\n', r"error: image list \S*quote.csv is not a readable CSV: EOF inside string starting at row 1\n"),
])
def test_eda_names_an_unreadable_image_list(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    import re

    (tmp_path / "labels.csv").write_text("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\n")
    (tmp_path / name).write_bytes(content)
    res = runner.invoke(cli.app, ["eda", str(tmp_path / "labels.csv"), "--image-list", str(tmp_path / name),
                                  "--out", str(tmp_path / "eda"), "--no-progress"])
    assert res.exit_code == 1 and re.fullmatch(message, res.output), res.output


@pytest.mark.parametrize("row", ["000a4bcdd.jpg,1", "000a4bcdd.jpg,1,1 2,x"])
def test_eda_refuses_a_label_row_with_too_few_or_too_many_fields(tmp_path: Path, row: str) -> None:
    (tmp_path / "labels.csv").write_text(f"ImageId,ClassId,EncodedPixels\n{row}\n")
    res = runner.invoke(cli.app, ["eda", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "eda"), "--no-progress"])
    fields = row.count(",") + 1
    assert res.exit_code == 1, res.output
    assert res.output.startswith(f"error: {tmp_path / 'labels.csv'}, line 2: {fields} field"), res.output
    assert not (tmp_path / "eda" / "report.html").exists()


@pytest.mark.parametrize(
    ("level", "message", "shown"),
    [
        (logging.INFO, "Starting execution", False),
        (logging.DEBUG, "detail", False),
        (logging.WARNING, "Progress bars disabled. To enable ...", False),  # dropped by its prefix
        (logging.WARNING, "resources are short", True),
        (logging.ERROR, "an actor died", True),
        (logging.WARNING, "P is not a prefix: drop is one string", True),
    ],
)
def test_quiet_info_drops_info_and_named_records_of_a_logger_and_its_children(level: int, message: str,
                                                                             shown: bool) -> None:
    from steelfast.cli.app import quiet_info

    seen: list[str] = []

    class Keep(logging.StreamHandler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    parent, child = logging.getLogger("sf_test_quiet"), logging.getLogger("sf_test_quiet.child")
    parent.setLevel(logging.DEBUG)
    handler = Keep()
    parent.addHandler(handler)
    in_file: list[str] = []
    log_file = logging.FileHandler(os.devnull)  # a log file keeps every record
    log_file.emit = lambda record: in_file.append(record.getMessage())  # type: ignore[method-assign]
    parent.addHandler(log_file)
    try:
        with quiet_info("sf_test_quiet", drop="Progress bars disabled."):
            child.log(level, message)
            parent.log(level, message)
        assert seen == ([message] * 2 if shown else []) and in_file == [message] * 2
        child.log(level, message)  # afterwards, as before
        assert seen[-1] == message and not handler.filters
    finally:
        parent.removeHandler(handler)
        parent.removeHandler(log_file)
        log_file.close()
        parent.setLevel(logging.NOTSET)
