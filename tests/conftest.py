"""Shared fixtures: the real Severstal data beside the repo (skipped when absent) and a seeded RNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import shared_data_dir


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real-data folder; tests using it skip when it is absent (it never ships with the project)."""
    folder = shared_data_dir()
    if not (folder / "train_partial.csv").is_file():
        pytest.skip(f"real Severstal data not found at {folder}")
    return folder


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
