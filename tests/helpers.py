"""Test helpers shared by several test modules (importable as ``helpers``; fixtures live in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["REPO", "random_mask", "shared_data_dir"]

REPO = Path(__file__).resolve().parents[1]


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
