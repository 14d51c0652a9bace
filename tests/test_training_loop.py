"""Tests for steelfast.training.loop (and the ``train`` CLI command) on a tiny on-the-fly dataset."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from training_helpers import TINY_ARCH, H, W, tiny_config, write_dataset
from typer.testing import CliRunner

import steelfast.training.epoch as epoch_mod
import steelfast.training.loop as train_mod
from steelfast.checkpoint import load_checkpoint, read_metadata
from steelfast.training.config import TrainConfig
from steelfast.training.data import load_data
from steelfast.training.loop import train
from steelfast.training.state import load_training_state
from steelfast.training.tune import tune_postprocess
from steelfast.training.validation import evaluate


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("steel"))


def test_training_writes_checkpoints_history_and_plot(data_dir: Path, tmp_path: Path) -> None:
    result = train(data_dir, tmp_path / "run", tiny_config(epochs=2))
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == [
        "best.json",
        "best.safetensors",
        "history.csv",
        "history.png",
        "last.json",
        "last.safetensors",
        "last.state.pt",
    ]
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    for column in [
        "train_loss",
        "val_loss",
        "train_dice",
        "val_dice",
        "val_score",
        "val_score_tuned",
        *[f"val_score_c{c}" for c in range(1, 5)],
        "train_images_per_s",
    ]:
        assert history[column].notna().all(), column
    assert history["train_loss"].between(0, 2).all() and history["val_loss"].between(0, 2).all()
    assert (history["val_score_tuned"] >= history["val_score"] - 1e-12).all()
    assert (tmp_path / "run" / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    model, meta = load_checkpoint(result.best_path)
    assert meta["architecture"] == model.config and meta["architecture"]["widths"] == [4, 8]
    assert meta["input"] == {"height": H, "width": W, "channels": 3, "multiple": 4}
    assert meta["postprocess"] == result.postprocess
    assert (
        len(meta["postprocess"]["thresholds"]) == 4 and len(meta["postprocess"]["min_areas"]) == 4
    )
    assert set(meta["normalization"]) == {"mean", "std"}
    training = meta["training"]
    assert training["data"]["train_images"] + training["data"]["val_images"] == 16
    assert training["validation"]["score"] == pytest.approx(result.final["score"])
    assert result.best_epoch == int(history.loc[history["val_score_tuned"].idxmax(), "epoch"])
    assert 0 <= result.final["score"] <= 1 and result.images_per_s > 0


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_fixed_seed_gives_identical_weights(data_dir: Path, tmp_path: Path) -> None:
    a = train(data_dir, tmp_path / "a", tiny_config(seed=3, crop_width=64, flips=True))
    b = train(data_dir, tmp_path / "b", tiny_config(seed=3, crop_width=64, flips=True))
    c = train(data_dir, tmp_path / "c", tiny_config(seed=4, crop_width=64, flips=True))
    wa, wb, wc = _weights(a.last_path), _weights(b.last_path), _weights(c.last_path)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]


def test_resume_continues_exactly(data_dir: Path, tmp_path: Path) -> None:
    straight = train(data_dir, tmp_path / "straight", tiny_config(epochs=2, seed=1))
    train(data_dir, tmp_path / "split", tiny_config(epochs=1, seed=1))
    resumed = train(
        data_dir,
        tmp_path / "split",
        tiny_config(epochs=2, seed=1),
        resume=tmp_path / "split" / "last.safetensors",
    )
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    ws, wr = _weights(straight.last_path), _weights(resumed.last_path)
    assert all(torch.equal(ws[k], wr[k]) for k in ws)
    assert (
        load_training_state(tmp_path / "split" / "last.state.pt", restore_rng=False)["epoch"] == 2
    )


def test_ctrl_c_saves_a_resumable_checkpoint(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    real = epoch_mod.bce_dice_loss

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # second step of the second epoch
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(epoch_mod, "bce_dice_loss", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(data_dir, tmp_path / "run", tiny_config(epochs=3))
    meta = read_metadata(tmp_path / "run" / "last.json")
    assert "interrupted" in meta["training"]["note"]
    state = load_training_state(tmp_path / "run" / "last.state.pt", restore_rng=False)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    monkeypatch.setattr(epoch_mod, "bce_dice_loss", real)
    result = train(
        data_dir, tmp_path / "run", tiny_config(epochs=2), resume=tmp_path / "run" / "last.safetensors"
    )
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_time_budget_stops_training_early(data_dir: Path, tmp_path: Path) -> None:
    result = train(data_dir, tmp_path / "run", tiny_config(epochs=50, batch_size=2, time_budget_s=0.01))
    assert len(result.history) == 1
    assert result.history[0]["stopped_early"] is True
    assert result.history[0]["train_images"] == 2  # one step, then the budget check stops it
    assert result.best_path is not None and result.best_path.is_file()


def test_evaluate_rle_score_matches_tuning_counts(data_dir: Path) -> None:
    cfg = tiny_config()
    data = load_data(data_dir, cfg)
    torch.manual_seed(0)
    from steelfast.models import build_model

    model = build_model(dict(TINY_ARCH))
    ev = evaluate(
        model,
        data.val,
        data.val_truth,
        data.val_ids,
        batch_size=3,
        amp="off",
        stats_thresholds=(0.3, 0.5, 0.7),
    )
    tuned = tune_postprocess(stats=ev.stats, min_areas=(0,))
    # compiled RLE + kaggle_score path == counting path at threshold 0.5, no minimum area
    assert ev.score == pytest.approx(tuned.default_score, abs=1e-12)
    assert ev.images == len(data.val_ids) == 4
    assert list(ev.report.index) == [1, 2, 3, 4, "all"]


def test_only_defects_filters_training_images(data_dir: Path) -> None:
    all_images = load_data(data_dir, tiny_config(only_defects=False)).summary
    defects = load_data(data_dir, tiny_config(only_defects=True)).summary
    assert defects["train_defect_free_images"] == 0
    assert (
        defects["train_images"]
        == all_images["train_images"] - all_images["train_defect_free_images"]
    )
    assert defects["val_images"] == all_images["val_images"]


def test_class_balance_weights_rare_classes_and_trains(data_dir: Path, tmp_path: Path) -> None:
    from steelfast.data.dataset import balanced_weights, class_presence

    data = load_data(data_dir, tiny_config(class_balance=1.0))
    assert load_data(data_dir, tiny_config()).train_weights is None
    presence = class_presence(pd.read_csv(data_dir / "train.csv"), data.train.image_ids)
    w = data.train_weights
    assert w.shape == (len(data.train),) and w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(w, balanced_weights(presence, 1.0))  # weights of the training images, in their order
    assert not np.allclose(w, 1 / len(w))
    result = train(data_dir, tmp_path / "run", tiny_config(class_balance=0.5))
    assert read_metadata(result.best_path)["training"]["data"]["class_balance"] == 0.5


def test_plain_fp32_without_channels_last_also_trains(data_dir: Path, tmp_path: Path) -> None:
    result = train(data_dir, tmp_path / "run", tiny_config(amp="off", channels_last=False))
    assert read_metadata(result.best_path)["training"]["autocast"] == "float32"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": 0}, "epochs must be a positive int, got 0"),
        ({"lr": -1.0}, "lr must be a positive number, got -1.0"),
        ({"crop_width": 100}, "crop_width must be a positive multiple of 32 or None, got 100"),
        ({"val_fraction": 1.5}, r"val_fraction must be in \(0, 1\), got 1.5"),
        ({"amp": "fp8"}, "amp must be 'auto', 'bf16', 'fp16' or 'off', got 'fp8'"),
        ({"time_budget_s": 0}, "time_budget_s must be a positive number or None, got 0"),
        ({"class_balance": -0.5}, r"class_balance must be a number in \[0, 4\], got -0.5"),
        ({"device": "tpu"}, "device must be"),
        ({"amp": "fp16", "device": "cpu"}, "amp='fp16' needs a CUDA device"),
    ],
)
def test_bad_options_are_rejected(
    data_dir: Path, tmp_path: Path, overrides: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        train(data_dir, tmp_path / "run", tiny_config(**overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 2.5}, "batch_size must be a positive int, got float: 2.5"),
        ({"seed": True}, "seed must be an int >= 0, got bool: True"),
    ],
)
def test_options_of_the_wrong_type_are_rejected(
    data_dir: Path, tmp_path: Path, overrides: dict, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        train(data_dir, tmp_path / "run", tiny_config(**overrides))


def test_missing_data_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        train(tmp_path / "nope", tmp_path / "run", tiny_config())
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train.csv"):
        train(tmp_path / "empty", tmp_path / "run", tiny_config())


def test_cli_train(data_dir: Path, tmp_path: Path) -> None:
    from steelfast.cli import app

    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            str(data_dir),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--all-images",
            "--val-fraction",
            "0.25",
            "--threads",
            "1",
            "--no-progress",
            "--crop-width",
            "64",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "best epoch 1: validation score" in result.output
    assert (tmp_path / "run" / "best.safetensors").is_file()
    meta = json.loads((tmp_path / "run" / "best.json").read_text())
    assert meta["training"]["config"]["crop_width"] == 64


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "error: epochs must be a positive int, got 0"),
        (["--crop-width", "50"], "error: crop_width must be a positive multiple of 32"),
    ],
)
def test_cli_train_errors_are_one_line(
    data_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    from steelfast.cli import app

    result = CliRunner().invoke(
        app, ["train", str(data_dir), "--out", str(tmp_path / "run"), *args]
    )
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_no_progress_cli_prints_one_line_per_epoch(data_dir: Path, tmp_path: Path) -> None:
    from steelfast.cli import app

    result = CliRunner().invoke(
        app,
        ["train", str(data_dir), "--out", str(tmp_path / "run"), "--epochs", "2", "--batch-size", "4",
         "--all-images", "--val-fraction", "0.25", "--threads", "1", "--no-progress", "--crop-width", "64"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    line = r"epoch {}/2  loss \d+\.\d{{4}}  val_loss .* score \d\.\d{{4}}  .* img/s  \d+\.\d s"
    lines = [s for s in result.output.splitlines() if s.startswith("epoch ")]
    assert len(lines) == 2, result.output
    for epoch, text in enumerate(lines, start=1):
        assert re.fullmatch(line.format(epoch) + r"(  \*best\*)?", text), text


def test_epoch_log_callback_and_quiet_default(data_dir: Path, tmp_path: Path, capsys) -> None:
    lines: list[str] = []
    result = train(data_dir, tmp_path / "a", tiny_config(epochs=2), epoch_log=lines.append)
    assert [s.split("  ")[0] for s in lines] == ["epoch 1/2", "epoch 2/2"]
    assert f"score {result.history[1]['val_score']:.4f}" in lines[1]
    capsys.readouterr()
    train(data_dir, tmp_path / "b", tiny_config(epochs=1))  # progress off, no callback: silent
    assert "epoch 1/1" not in capsys.readouterr().out


def test_cli_unet_defaults_are_the_benchmarks_fast_configuration(tmp_path: Path, monkeypatch) -> None:
    """The defaults equal the README figures' command of bench/train_quality.py, parsed by its parser."""
    import shlex
    from types import SimpleNamespace

    from helpers import bench_script

    from steelfast.cli import app

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    command = re.search(r"`python bench/train_quality\.py ([^`]*--lr [^`]*)`", readme)
    assert command is not None, "README lost its quality-figures command"
    bench = bench_script("train_quality")
    args = bench._parser().parse_args(shlex.split(command.group(1)))

    seen: list[TrainConfig] = []

    def spy(data_dir, out, config, **kwargs):
        seen.append(config)
        return SimpleNamespace(rank=0, final=None)

    monkeypatch.setattr(train_mod, "train", spy)
    result = CliRunner().invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.lr, config.lr_schedule, config.crop_width, config.batch_size) == (
        args.lr, args.lr_schedule, args.crop_width, args.batch_size
    )
    assert (config.lr, config.lr_schedule, config.crop_width, config.batch_size) == (3e-3, "cosine", 256, 16)
    assert config.amp == TrainConfig().amp == "auto"  # bf16 only where the CPU has it natively


def test_one_bf16_answer_for_training_and_inference() -> None:
    from steelfast._device import autocast_dtype, cpu_has_native_bf16
    from steelfast.inference.backends.torch_backend import TorchBackend
    from steelfast.models import UNet

    native = cpu_has_native_bf16()
    assert (autocast_dtype("auto", torch.device("cpu")) == torch.bfloat16) is native
    backend = TorchBackend(UNet().eval(), {"normalization": {"mean": 0.5, "std": 0.25}}, device="cpu", compile=False)
    assert (backend.precision == "bf16") is native
