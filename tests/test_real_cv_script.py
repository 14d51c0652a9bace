"""bench/real_cv.py: merging a run's out-of-fold files, and its option checks (no training here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import bench_script, small_labelled_set, write_fair_run


def _script():
    return bench_script("real_cv")


class _Data:
    def __init__(self, n: int) -> None:
        self.ids = [f"{i}.jpg" for i in range(n)]

    def __len__(self) -> int:
        return len(self.ids)


def _write_run(out: Path, n: int = 6, folds: int = 2, config: dict | None = None, skip: int | None = None) -> np.ndarray:
    """Fold files as the fold step writes them (real_cv.save_oof, which weak_masks.py shares)."""
    fold = np.arange(n) % folds
    rng = np.random.default_rng(0)
    for f in range(folds):
        if f == skip:
            continue
        held_out = int((fold == f).sum())
        _script().save_oof(out, f, fold, _Data(n), rng.integers(0, 255, (held_out, 4, 256, 1600), dtype=np.uint8),
                           rng.random((held_out, 4)).astype(np.float32),
                           {"epochs": 30, "teacher": f"t{f}", **(config or {})})
    return fold


def test_load_run_merges_the_folds(tmp_path: Path) -> None:
    fold = _write_run(tmp_path)
    oof, configs, teachers = _script().load_run(tmp_path, 2, _Data(6))
    assert oof.fold.tolist() == fold.tolist() and oof.seg.shape == (6, 4, 256, 1600)
    for f in range(2):
        z = np.load(tmp_path / f"oof_{f}.npz")
        assert np.array_equal(oof.seg[z["idx"]], z["seg"]) and np.array_equal(oof.gate[z["idx"]], z["gate"])
    # the teacher's folder is not a setting; fields recorded only since (amp, area_weight) read as their old values
    assert configs == {json.dumps({"amp": "off", "area_weight": 0.0, "epochs": 30}, sort_keys=True)}
    assert teachers == {"t0", "t1"}


@pytest.mark.parametrize(("case", "match"), [
    ("missing", r"oof_1\.npz is missing: run the 'fold' step for fold 1 first"),
    ("images", "was made on other images than the current data"),
    ("folds", r"the fold files cover 6 of 6 images for --folds 3"),
])
def test_load_run_refuses(tmp_path: Path, case: str, match: str) -> None:
    _write_run(tmp_path, skip=1 if case == "missing" else None)
    folds = 3 if case == "folds" else 2
    if case == "folds":  # a third file, made with the same two-fold split
        np.savez(tmp_path / "oof_2.npz", **dict(np.load(tmp_path / "oof_0.npz")))
    with pytest.raises(SystemExit, match=match):
        _script().load_run(tmp_path, folds, _Data(7 if case == "images" else 6))


@pytest.mark.parametrize(("config", "differ"), [
    ({"epochs": 10}, "epochs"),
    ({"epochs": 30, "amp": "bf16"}, "amp"),
    ({"epochs": 10, "amp": "bf16", "lr": 0.1}, "amp, epochs, lr"),
    ({"epochs": 30, "amp": "off"}, None),  # what a file from before the field means
    ({"epochs": 30, "area_weight": 0.2}, "area_weight"),
    ({"epochs": 30, "amp": "off", "area_weight": 0.0}, None),
])
def test_load_run_refuses_mixed_configs(tmp_path: Path, config: dict, differ: str | None) -> None:
    _write_run(tmp_path)  # records {"epochs": 30} without amp
    z = dict(np.load(tmp_path / "oof_1.npz"))
    np.savez(tmp_path / "oof_1.npz", **{**z, "config": json.dumps(config)})
    if differ is None:
        assert len(_script().load_run(tmp_path, 2, _Data(6))[1]) == 1
    else:
        with pytest.raises(SystemExit, match=rf"trained with different configs \(they differ in {differ}\)"):
            _script().load_run(tmp_path, 2, _Data(6))


@pytest.mark.parametrize(("argv", "match"), [
    (["fold", "--prevalence", "0.1,0.1,0.4,0.1"], "--prevalence is an option of the steps 'report' and 'all'"),
    (["report", "--prevalence", "0.1,0.1"], r"--prevalence: prevalence needs one share per class \(4\), got 2"),
    (["report", "--prevalence", "0.1,1.5,0.4,0.1"], "--prevalence: prevalence shares must lie strictly between"),
])
def test_prevalence_checked_before_any_data_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    argv: list[str], match: str) -> None:
    monkeypatch.setenv("STEELFAST_SHARED_DATA", str(tmp_path / "no_data_here"))
    monkeypatch.setattr(sys, "argv", ["real_cv.py"])
    with pytest.raises(SystemExit, match=match):
        _script().main([*argv, "--out", str(tmp_path / "run")])


@pytest.mark.parametrize("prevalence", [None, "0.3,0.3,0.3,0.3"])
def test_report_writes_the_cv_figures_and_saves_the_gated_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prevalence: str | None) -> None:
    import steelfast.data.real
    from steelfast.checkpoint import load_checkpoint, save_checkpoint
    from steelfast.efficientnet import GatedUNet
    from steelfast.severstal import PREVALENCE
    from steelfast.training.crossval import cross_validate
    from steelfast.training.gate_tuning import tune_gate

    data = small_labelled_set()
    monkeypatch.setattr(steelfast.data.real, "load_shared", lambda: data)
    monkeypatch.setattr(sys, "argv", ["real_cv.py"])
    out = tmp_path / "run"
    out.mkdir()
    write_fair_run(out, data, 2)
    # A final model that recorded the precision it trained in, and one from before that was kept.
    trained_with = {"device": "cuda", "autocast": "float16"} if prevalence is None else None
    final = {"pseudo_labels": None, **(trained_with or {})}
    save_checkpoint(out / "final_ungated.safetensors", GatedUNet(), {"training": final})
    argv = ["report", "--out", str(out), "--folds", "2", "--save", str(tmp_path / "model.safetensors")]
    assert _script().main(argv + (["--prevalence", prevalence] if prevalence else [])) == 0

    oof, _, _ = _script().load_run(out, 2, data)
    rates = [0.3] * 4 if prevalence else list(PREVALENCE)
    cv = cross_validate(data, oof, prevalence=rates)
    figures = json.loads((out / "cv.json").read_text())
    assert figures["score_mean"] == pytest.approx(cv.summary()["score_mean"])
    assert figures["dice_defects_mean"] == pytest.approx(cv.summary()["dice_defects_mean"])
    assert figures["tuned_prevalence_estimate"]["prevalence"] == pytest.approx(rates)
    assert figures["config"]["epochs"] == 30 and figures["data"] == {"name": "test set"}
    assert len(figures["choices"]) == 2
    assert len(np.loadtxt(out / "folds.csv", delimiter=",", skiprows=1, ndmin=2)) == 2
    text = (out / "report.txt").read_text()
    assert "5-fold" not in text and "2-fold CV over 8 fully labelled images" in text
    assert "gate AUC out of fold" in text

    model, meta = load_checkpoint(tmp_path / "model.safetensors")
    choice = tune_gate(oof.seg, oof.gate, data.masks, data.presence, prevalence=rates)
    assert model.config["gate_thresholds"] == pytest.approx(choice.gate)
    assert meta["postprocess"]["thresholds"] == pytest.approx(choice.thresholds)
    assert meta["training"]["prevalence"] == pytest.approx(rates)
    assert meta["training"]["cv"]["score_mean"] == pytest.approx(figures["score_mean"])
    # Where the final model trained, as it recorded it (not the machine that ran report); unknown: absent.
    assert {k: meta["training"][k] for k in ("device", "autocast") if k in meta["training"]} == (trained_with or {})
    assert any(g < 1 for g in choice.gate)  # the fair model switches some class on: the test sees a real choice


@pytest.mark.parametrize(("argv", "match"), [
    (["fold", "--amp", "fp8"], "bad trainer option: amp must be 'auto', 'bf16', 'fp16' or 'off', got 'fp8'"),
    (["fold", "--lr", "5"], "bad trainer option: lr"),
])
def test_trainer_options_checked_before_any_data_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         argv: list[str], match: str) -> None:
    monkeypatch.setenv("STEELFAST_SHARED_DATA", str(tmp_path / "no_data_here"))
    with pytest.raises(SystemExit, match=match):
        _script().main([*argv, "--out", str(tmp_path / "run")])


def test_fold_models_record_the_precision_they_trained_in(tmp_path: Path) -> None:
    from steelfast.checkpoint import load_checkpoint
    from steelfast.efficientnet import GatedUNet
    from steelfast.training.gated import GatedTrainConfig

    data = small_labelled_set()
    cfg = GatedTrainConfig(device="cpu", amp="bf16")
    _script()._save_model(tmp_path / "model_0.safetensors", GatedUNet(), cfg, data, None, fold=0)
    _, meta = load_checkpoint(tmp_path / "model_0.safetensors")
    assert (meta["training"]["device"], meta["training"]["autocast"]) == ("cpu", "bfloat16")
    assert meta["training"]["ids"] == list(data.ids) and meta["training"]["fold"] == 0


@pytest.mark.parametrize(("argv", "match"), [
    (["fold", "--synth-maps-only"], r"--synth-maps-only needs --synth N and real images beside them"),
    (["fold", "--synth", "4", "--synth-only", "--synth-maps-only"], r"--synth-maps-only needs --synth N"),
])
def test_synth_maps_only_checked_before_any_data_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        argv: list[str], match: str) -> None:
    monkeypatch.setenv("STEELFAST_SHARED_DATA", str(tmp_path / "no_data_here"))
    with pytest.raises(SystemExit, match=match):
        _script().main([*argv, "--out", str(tmp_path / "run")])


@pytest.mark.parametrize("maps_only", [False, True])
def test_synth_maps_only_keeps_the_synthetic_images_out_of_the_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   maps_only: bool) -> None:
    import argparse

    import pandas as pd

    from steelfast.rle import encode

    data = small_labelled_set(8, weak=0)
    data.images[:] = 100
    for i in range(len(data)):  # the defects darker than the sheet, so that they have an appearance to copy
        data.images[i][data.masks[i].any(axis=0)] = 40
    rows = [(f"other_{i}.jpg", c + 1, encode(data.masks[i][c])) for i in range(len(data)) for c in range(4)
            if data.masks[i][c].any()]  # the shape bank: masks of images outside the data
    pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"]).to_csv(tmp_path / "train_partial.csv",
                                                                               index=False)
    monkeypatch.setenv("STEELFAST_SHARED_DATA", str(tmp_path))
    args = argparse.Namespace(synth=3, synth_only=False, synth_sheets="all", synth_maps_only=maps_only, seed=0, fold=0)
    train = _script()._with_synth(args, data, data.subset(range(6)))
    assert len(train) == 9 and train.gate[:6].all()
    assert train.gate[6:].tolist() == [not maps_only] * 3
