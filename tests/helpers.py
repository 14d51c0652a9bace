"""Test helpers shared by several test modules (importable as ``helpers``; fixtures live in conftest.py)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np

__all__ = ["REPO", "bench_script", "random_mask", "shared_data_dir"]

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
