"""Test helpers shared by several test modules (importable as ``helpers``; fixtures live in conftest.py)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np

__all__ = ["REPO", "bench_script", "random_mask", "shared_data_dir", "small_labelled_set", "write_fair_run"]

REPO = Path(__file__).resolve().parents[1]


def bench_script(name: str) -> ModuleType:
    """A fresh import of ``bench/<name>.py`` (bench/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_data_dir() -> Path:
    """``../shared/data/severstal`` beside the repo, or $STEELFAST_SHARED_DATA."""
    env = os.environ.get("STEELFAST_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data" / "severstal"


def random_mask(rng: np.random.Generator, shape: tuple[int, int], coverage: float) -> np.ndarray:
    """A mask of rectangles with roughly the given coverage (uint8 0/1)."""
    height, width = shape
    mask = np.zeros(shape, dtype=np.uint8)
    target = coverage * height * width
    while mask.sum() < target:
        y, x = rng.integers(0, height), rng.integers(0, width)
        mask[y : y + rng.integers(1, max(2, height // 3)), x : x + rng.integers(1, max(2, width // 8))] = 1
    return mask


def small_labelled_set(n: int = 12, weak: int = 4):
    """A small LabelledSet: image i holds class (i % 4) + 1 in a box when i % 3, else nothing; the
    last ``weak`` images keep their presence only."""
    from steelfast.data.real import LabelledSet

    presence = np.zeros((n, 4), bool)
    masks = []
    for i in range(n):
        m = np.zeros((4, 256, 1600), np.uint8)
        if i % 3:
            presence[i, i % 4] = True
            m[i % 4, 40:120, 100 + 50 * i: 400 + 50 * i] = 1
        masks.append(m if i < n - weak else None)
    full = np.array([m is not None for m in masks])
    return LabelledSet([f"{i:02d}.jpg" for i in range(n)], np.zeros((n, 256, 1600), np.uint8), presence, full,
                       masks, {"name": "test set"})


def write_fair_run(out: Path, data, folds: int) -> np.ndarray:
    """A real_cv.py run's oof_F.npz files for ``data`` (folds as real_cv.py deals them), from a fair
    model: the truth's boxes a little shifted, gate scores that rank most present classes above
    absent ones. Returns the folds."""
    from steelfast.training.crossval import stratified_folds

    fold = stratified_folds(data, folds, seed=0)
    rng = np.random.default_rng(1)
    for f in range(folds):
        idx = np.flatnonzero(fold == f)
        seg = np.zeros((len(idx), 4, 256, 1600), np.uint8)
        for k, i in enumerate(idx):
            for c in np.flatnonzero(data.presence[i]):
                seg[k, c, 50:130, 120 + 50 * i: 420 + 50 * i] = 230
        gate = np.clip(data.presence[idx] * 0.7 + rng.random((len(idx), 4)) * 0.4, 0, 1).astype(np.float32)
        bench_script("real_cv").save_oof(out, f, fold, data, seg, gate, {"epochs": 30})
    return fold
