"""Tests for steelfast.training.state: resume state round trips, RNG restore, and refusing code-running files."""

from __future__ import annotations

import os
import re

import pytest
import torch

from steelfast.checkpoint import save_checkpoint
from steelfast.model_metadata import CheckpointError
from steelfast.models import UNet
from steelfast.training.state import load_training_state, save_training_state, state_path_for

TINY = {"widths": (4, 8), "decoder_widths": (8, 4), "bottleneck": 8}


def _model(seed: int = 0, **kw) -> UNet:
    torch.manual_seed(seed)
    return UNet(**{**TINY, **kw})


class _Bomb:
    """Unpickling this would run a shell command (the classic malicious checkpoint)."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickle_bomb_training_state_is_refused_without_running_it(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "m.state.pt"
    torch.save({"epoch": 1, "evil": _Bomb()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_training_state(path)
    assert not (tmp_path / "PWNED").exists()


def test_training_state_round_trip_restores_rng(tmp_path) -> None:
    import random

    import numpy as np

    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(1, 3, 32, 32)).sum().backward()
    opt.step()
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    path = save_training_state(
        state_path_for(tmp_path / "last.safetensors"),
        {"epoch": 3, "optimizer": opt.state_dict(), "history": [{"epoch": 1, "loss": 0.5}]},
    )
    assert path.name == "last.state.pt"
    expected = (torch.rand(3), random.random(), np.random.random())
    torch.manual_seed(9)
    random.seed(9)
    np.random.seed(9)
    state = load_training_state(path)
    assert state["epoch"] == 3 and state["history"] == [{"epoch": 1, "loss": 0.5}]
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.random() == expected[2]
    opt2 = torch.optim.Adam(_model().parameters(), lr=1e-3)
    opt2.load_state_dict(state["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == 1


@pytest.mark.parametrize("kind", ["weights", "metadata", "text", "empty"])
def test_training_state_from_a_non_torch_file_names_the_file(tmp_path, kind: str) -> None:
    weights = save_checkpoint(tmp_path / "m.safetensors", _model())
    path = {
        "weights": weights,
        "metadata": weights.with_suffix(".json"),
        "text": tmp_path / "notes.txt",
        "empty": tmp_path / "empty.state.pt",
    }[kind]
    if kind == "text":
        path.write_text("hello world")
    if kind == "empty":
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(path))}: "):
        load_training_state(path)
