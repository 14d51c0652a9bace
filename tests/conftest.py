"""Shared fixtures: the real Severstal data beside the repo (skipped when absent), a seeded RNG, and the
tiny U-Net of the inference tests as a torch backend and as a checkpoint file (a module may define its own)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import shared_data_dir
from segment_helpers import tiny_checkpoint, torch_backend

from steelfast.inference.backends.torch_backend import TorchBackend


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


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    return torch_backend()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))
