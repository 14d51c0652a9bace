"""bench/oof_variants.py: flip predictions from a run's fold models, and averaging flips and runs out of fold."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, bench_script, small_labelled_set, write_fair_run

from steelfast.model_files import file_sha256

N, FOLDS = 6, 2


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # as when run: its sibling real_cv.py is importable
    return bench_script("oof_variants")


class _Data:
    def __init__(self) -> None:
        self.ids = [f"{i}.jpg" for i in range(N)]
        self.images = np.random.default_rng(2).integers(0, 256, (N, 256, 1600), dtype=np.uint8)

    def __len__(self) -> int:
        return N


def _write_run(out: Path, seg_value: int, gate_value: float, fold: np.ndarray | None = None,
               flips: dict[str, tuple[int, float]] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fold = np.arange(N) % FOLDS if fold is None else fold
    for f in range(FOLDS):
        idx = np.flatnonzero(fold == f)
        shape = (len(idx), 4, 256, 1600)
        np.savez(out / f"oof_{f}.npz", idx=idx, fold=fold, ids=np.array([f"{i}.jpg" for i in range(N)]),
                 seg=np.full(shape, seg_value, np.uint8), gate=np.full((len(idx), 4), gate_value, np.float32),
                 config=json.dumps({"epochs": 30}))
        if flips:
            np.savez(out / f"flips_{f}.npz", idx=idx,
                     **{k: v for name, (s, g) in flips.items() for k, v in (
                         ("seg_" + name, np.full(shape, s, np.uint8)),
                         ("gate_" + name, np.full((len(idx), 4), g, np.float32)))})


@pytest.mark.parametrize(("tta", "others", "seg", "gate"), [
    ("none", [], 100, 0.2),
    ("w", [], 150, 0.4),  # (100 + 200) / 2, (0.2 + 0.6) / 2
    ("wh", [], 120, 0.3),  # (100 + 200 + 60) / 3, (0.2 + 0.6 + 0.1) / 3
    ("none", [(40, 0.8)], 70, 0.5),
    ("w", [(40, 0.8)], 110, 0.55),  # (100 + 200 + 40 + 100) / 4, (0.2 + 0.6 + 0.8 + 0.6) / 4
])
def test_merged_averages_maps_and_gates(script, tmp_path: Path, tta: str, others: list, seg: int,
                                        gate: float) -> None:
    _write_run(tmp_path / "a", 100, 0.2, flips={"w": (200, 0.6), "h": (60, 0.1)})
    runs = [tmp_path / "a"]
    for k, (s, g) in enumerate(others):
        _write_run(tmp_path / f"o{k}", s, g, flips={"w": (100, 0.6), "h": (0, 0.0)})
        runs.append(tmp_path / f"o{k}")
    oof = script.merged(runs, FOLDS, _Data(), tta)
    assert oof.seg.dtype == np.uint8 and np.all(oof.seg == seg)
    assert oof.gate.dtype == np.float32 and np.allclose(oof.gate, gate)
    assert oof.fold.tolist() == (np.arange(N) % FOLDS).tolist()


def test_with_maps_of_takes_the_maps_and_keeps_the_gate(script, tmp_path: Path) -> None:
    _write_run(tmp_path / "gate", 100, 0.2)
    _write_run(tmp_path / "maps", 40, 0.9)
    _write_run(tmp_path / "other", 40, 0.9, fold=np.arange(N) // 3)
    data = _Data()
    oof = script.with_maps_of(script.merged([tmp_path / "gate"], FOLDS, data, "none"),
                              script.merged([tmp_path / "maps"], FOLDS, data, "none"), tmp_path / "maps")
    assert np.all(oof.seg == 40) and np.allclose(oof.gate, 0.2)
    with pytest.raises(SystemExit, match=r"other was made on other folds than the gate's run"):
        script.with_maps_of(oof, script.merged([tmp_path / "other"], FOLDS, data, "none"), tmp_path / "other")


@pytest.mark.parametrize(("case", "match"), [
    ("folds", r"was made on other folds than .*a \(another --seed\?\)"),
    ("flips", r"flips_0\.npz is missing: run 'python bench/oof_variants\.py flips --out .*b' first"),
    ("stale", r"b/flips_0\.npz was made on other folds than .*b/oof_0\.npz: run 'python bench/oof_variants\.py "
              r"flips --out .*b' again"),
])
def test_merged_refuses(script, tmp_path: Path, case: str, match: str) -> None:
    _write_run(tmp_path / "a", 100, 0.2, flips={"w": (1, 0.1), "h": (1, 0.1)})
    if case == "stale":  # b's folds were made again after its flips: its flip files cover other images
        _write_run(tmp_path / "b", 100, 0.2, fold=np.arange(N) // 3, flips={"w": (1, 0.1), "h": (1, 0.1)})
        _write_run(tmp_path / "b", 100, 0.2)
        runs = [tmp_path / "b"]
    else:
        _write_run(tmp_path / "b", 100, 0.2, fold=(np.arange(N) // 3) if case == "folds" else None)
        runs = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(SystemExit, match=match):
        script.merged(runs, FOLDS, _Data(), "none" if case == "folds" else "w")


def test_flips_maps_come_back_in_place(script, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from steelfast.checkpoint import save_checkpoint
    from steelfast.efficientnet import GatedUNet

    _write_run(tmp_path, 0, 0.0)
    for f in range(FOLDS):
        save_checkpoint(tmp_path / f"model_{f}.safetensors", GatedUNet(), {})
    # A stand-in network whose maps are its input image and whose gate reads the top-left pixel:
    # flipped back, every map must be the image again; the gate sees the flipped image.
    seen = []

    def predict(model, images):
        seen.append(model.training)
        return np.repeat(images[:, None], 4, axis=1), np.repeat(images[:, :1, 0] / 255, 4, axis=1).astype(np.float32)

    monkeypatch.setattr(script, "predict", predict)
    data = _Data()
    script.flips(tmp_path, FOLDS, data)
    assert seen == [False] * 2 * FOLDS  # the models run in eval mode
    for f in range(FOLDS):
        z = np.load(tmp_path / f"flips_{f}.npz")
        assert str(z["model_sha256"]) == file_sha256(tmp_path / f"model_{f}.safetensors")
        idx = np.flatnonzero(np.arange(N) % FOLDS == f)
        assert z["idx"].tolist() == idx.tolist()
        for name in ("w", "h"):
            assert np.array_equal(z["seg_" + name], np.repeat(data.images[idx][:, None], 4, axis=1))
        assert np.allclose(z["gate_w"][:, 0], data.images[idx, 0, -1] / 255)
        assert np.allclose(z["gate_h"][:, 0], data.images[idx, -1, 0] / 255)


def test_merged_refuses_flips_of_a_replaced_fold_model(script, tmp_path: Path) -> None:
    _write_run(tmp_path, 100, 0.2, flips={"w": (1, 0.1), "h": (1, 0.1)})
    for f in range(FOLDS):
        (tmp_path / f"model_{f}.safetensors").write_bytes(b"the model the flips came from")
        z = dict(np.load(tmp_path / f"flips_{f}.npz"))
        np.savez(tmp_path / f"flips_{f}.npz", **z, model_sha256=file_sha256(tmp_path / f"model_{f}.safetensors"))
    assert np.all(script.merged([tmp_path], FOLDS, _Data(), "w").seg == 50)  # (100 + 1) / 2, rounded half to even
    (tmp_path / "model_1.safetensors").write_bytes(b"a model trained again")
    with pytest.raises(SystemExit, match=r"flips_1\.npz was made by another model_1\.safetensors than the one in "
                                          r".*: run 'python bench/oof_variants\.py flips --out .*' again"):
        script.merged([tmp_path], FOLDS, _Data(), "w")


@pytest.mark.parametrize(("missing", "match"), [
    ("model_0.safetensors", r"model_0\.safetensors is missing: only runs of --arch effnet-lite0"),
    ("oof_1.npz", r"oof_1\.npz is missing: run the 'fold' step for fold 1 first"),
])
def test_flips_needs_the_fold_models_and_predictions(script, tmp_path: Path, missing: str, match: str) -> None:
    _write_run(tmp_path, 0, 0.0)
    for f in range(FOLDS):
        (tmp_path / f"model_{f}.safetensors").write_bytes(b"")  # never read: the check comes first
    (tmp_path / missing).unlink()
    with pytest.raises(SystemExit, match=match):
        script.flips(tmp_path, FOLDS, _Data())


@pytest.mark.parametrize(("argv", "match"), [
    (["flips", "--tta", "w"], "--tta, --with, --maps-from and --prevalence are options of the step 'score'"),
    (["flips", "--maps-from", "x"], "--tta, --with, --maps-from and --prevalence are options of the step 'score'"),
    (["score", "--prevalence", "0.1,0.1"], r"--prevalence: prevalence needs one share per class \(4\), got 2"),
    (["score", "--device", "cuda"], r"--device is an option of the step 'flips' \(score runs no model\)"),
])
def test_options_checked_before_any_data_is_read(script, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  argv: list[str], match: str) -> None:
    monkeypatch.setenv("STEELFAST_SHARED_DATA", str(tmp_path / "no_data_here"))
    monkeypatch.setattr(sys, "argv", ["oof_variants.py"])
    with pytest.raises(SystemExit, match=match):
        script.main([*argv, "--out", str(tmp_path)])


@pytest.mark.parametrize("tta", ["none", "w"])
def test_score_prints_the_cv_report_of_the_average(script, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture, tta: str) -> None:
    import steelfast.data.real
    from steelfast.training.crossval import cross_validate
    from steelfast.training.fit import cv_text

    data = small_labelled_set()
    monkeypatch.setattr(steelfast.data.real, "load_shared", lambda: data)
    fold = write_fair_run(tmp_path, data, FOLDS)
    for f in range(FOLDS):  # the left-right flip's maps: empty; its gate: certain
        z = np.load(tmp_path / f"oof_{f}.npz")
        np.savez(tmp_path / f"flips_{f}.npz", idx=z["idx"], seg_w=np.zeros_like(z["seg"]),
                 gate_w=np.ones_like(z["gate"]), seg_h=z["seg"], gate_h=z["gate"])
    assert script.main(["score", "--out", str(tmp_path), "--folds", str(FOLDS), "--tta", tta]) == 0
    printed = capsys.readouterr().out
    expected = script.merged([tmp_path], FOLDS, data, tta)
    if tta == "w":
        run = script.merged([tmp_path], FOLDS, data, "none")
        assert np.array_equal(expected.seg, np.round(run.seg / 2).astype(np.uint8))
        assert np.allclose(expected.gate, (run.gate + 1) / 2)
    assert expected.fold.tolist() == fold.tolist()
    assert printed.startswith(f"runs: {tmp_path}; flip TTA: {tta}\n")
    assert cv_text(data, cross_validate(data, expected)) in printed
    assert "gate AUC out of fold (all images, class presence), classes 1-4: " in printed
