"""Shared fixtures: the real Severstal data beside the repo (skipped when absent) and random masks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data/severstal`` beside the repo, or $STEELFAST_SHARED_DATA."""
    env = os.environ.get("STEELFAST_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data" / "severstal"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real-data folder; tests using it skip when it is absent (it never ships with the project)."""
    folder = shared_data_dir()
    if not (folder / "train_partial.csv").is_file():
        pytest.skip(f"real Severstal data not found at {folder}")
    return folder


def random_mask(rng: np.random.Generator, shape: tuple[int, int], coverage: float) -> np.ndarray:
    """A mask of rectangles and noise with roughly the given coverage (uint8 0/1)."""
    height, width = shape
    mask = np.zeros(shape, dtype=np.uint8)
    target = coverage * height * width
    while mask.sum() < target:
        y, x = rng.integers(0, height), rng.integers(0, width)
        mask[y : y + rng.integers(1, max(2, height // 3)), x : x + rng.integers(1, max(2, width // 8))] = 1
    return mask


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
