"""bench/real_cv.py: merging a run's out-of-fold files, and its option checks (no training here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import bench_script


def _script():
    return bench_script("real_cv")


class _Data:
    def __init__(self, n: int) -> None:
        self.ids = [f"{i}.jpg" for i in range(n)]

    def __len__(self) -> int:
        return len(self.ids)


def _write_run(out: Path, n: int = 6, folds: int = 2, config: dict | None = None, skip: int | None = None) -> np.ndarray:
    fold = np.arange(n) % folds
    rng = np.random.default_rng(0)
    for f in range(folds):
        if f == skip:
            continue
        idx = np.flatnonzero(fold == f)
        np.savez(out / f"oof_{f}.npz", idx=idx, fold=fold, ids=np.array([f"{i}.jpg" for i in range(n)]),
                 seg=rng.integers(0, 255, (len(idx), 4, 256, 1600), dtype=np.uint8),
                 gate=rng.random((len(idx), 4)).astype(np.float32),
                 config=json.dumps({"epochs": 30, "teacher": f"t{f}", **(config or {})}))
    return fold


def test_load_run_merges_the_folds(tmp_path: Path) -> None:
    fold = _write_run(tmp_path)
    oof, configs, teachers = _script().load_run(tmp_path, 2, _Data(6))
    assert oof.fold.tolist() == fold.tolist() and oof.seg.shape == (6, 4, 256, 1600)
    for f in range(2):
        z = np.load(tmp_path / f"oof_{f}.npz")
        assert np.array_equal(oof.seg[z["idx"]], z["seg"]) and np.array_equal(oof.gate[z["idx"]], z["gate"])
    assert configs == {json.dumps({"epochs": 30}, sort_keys=True)}  # the teacher's folder is not a setting
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


def test_load_run_refuses_mixed_configs(tmp_path: Path) -> None:
    _write_run(tmp_path)
    z = dict(np.load(tmp_path / "oof_1.npz"))
    np.savez(tmp_path / "oof_1.npz", **{**z, "config": json.dumps({"epochs": 10})})
    with pytest.raises(SystemExit, match="trained with different configs"):
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
