"""The `steelfast segment` / `steelfast-segment` and `steelfast export` commands, driven by a CLI runner."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from steelfast import cli
from steelfast.checkpoint import save_checkpoint
from steelfast.models import UNet

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = UNet(widths=(4, 4, 4, 4, 4), bottleneck=8, decoder_widths=(4, 4, 4, 4, 4))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(d / f"im{i}.jpg"), rng.integers(0, 256, (64, 128), dtype=np.uint8))
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
    assert (tmp_path / "sub.failures.csv").is_file()


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
    ],
)
def test_segment_errors_are_one_line(checkpoint: Path, folder: Path, tmp_path: Path, args: list, message: str) -> None:
    (tmp_path / "empty").mkdir()
    values = {"empty": tmp_path / "empty", "ckpt": checkpoint, "tmp": tmp_path, "folder": folder}
    argv = [a.format(**values) for a in args]
    result = runner.invoke(cli.app, ["segment", *argv, "--no-progress"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.output
    assert "Traceback" not in result.output


def test_missing_default_model(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import steelfast.checkpoint

    monkeypatch.setattr(steelfast.checkpoint, "default_checkpoint_path", lambda: tmp_path / "default.safetensors")
    result = runner.invoke(cli.app, ["segment", str(folder), "-o", str(tmp_path / "s.csv"), "--no-progress"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: the default model") and "--model" in result.output


def test_every_option_has_help() -> None:
    import typer.main

    for name in ("segment", "export"):
        command = next(c for c in cli.app.registered_commands if c.callback.__name__ == name)
        click_cmd = typer.main.get_command_from_info(command, pretty_exceptions_short=True, rich_markup_mode=None)
        assert all(p.help for p in click_cmd.params), name


def test_segment_main_is_the_segment_command() -> None:
    assert callable(cli.segment_main) and callable(cli.segment)


def test_export_command(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = runner.invoke(cli.app, ["export", str(checkpoint), "--onnx", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and f"wrote {out}" in result.output
    bad = runner.invoke(cli.app, ["export", str(checkpoint), "--onnx", str(out), "--opset", "11"])
    assert bad.exit_code == 1 and "opset must be an int >= 17, got 11" in bad.output
