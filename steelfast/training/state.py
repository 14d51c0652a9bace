"""Resume state of a training run: the optimizer, epoch, history and RNG states in, one file out.

The state of checkpoint ``<stem>.safetensors`` lives beside it in ``<stem>.state.pt``
(:func:`state_path_for`), written with :func:`torch.save` and read with
``torch.load(weights_only=True)``, which refuses any pickled object other than tensors and plain
containers: a state file cannot run code when loaded. The torch, Python and NumPy RNG states are
saved with it and restored on load, so a resumed run draws the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from steelfast._io import PathLike, atomic_write_bytes
from steelfast.checkpoint import checkpoint_files
from steelfast.model_metadata import CheckpointError

__all__ = ["load_training_state", "save_training_state", "state_path_for"]


def state_path_for(path: PathLike) -> Path:
    """Path of the resume-state file that belongs to checkpoint ``path`` (``<stem>.state.pt``)."""
    weights, _ = checkpoint_files(path)
    return weights.with_suffix(".state.pt")


def _rng_state() -> dict[str, Any]:
    import random

    import numpy as np

    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # Stored as a tensor: weights_only loading refuses numpy arrays.
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype("int64")),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )


def save_training_state(path: PathLike, state: Mapping[str, Any]) -> Path:
    """Atomically save resume state (tensors and plain containers only) to ``path``.

    Args:
        path: Destination, normally :func:`state_path_for` of the checkpoint.
        state: Dict such as ``{"epoch", "optimizer", "scaler", "history", "best_score"}``; the
            torch, Python and NumPy RNG states are added under ``"rng"``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import io

    p = Path(path)
    payload = dict(state)
    payload["rng"] = _rng_state()
    buf = io.BytesIO()
    torch.save(payload, buf)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(p, buf.getvalue(), fsync=True)
    return p


def load_training_state(
    path: PathLike, *, restore_rng: bool = True
) -> dict[str, Any]:
    """Load resume state with ``torch.load(weights_only=True)``; optionally restore RNG states.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CheckpointError: If the file holds anything but tensors and plain containers (a pickle
            that would run code is refused, not executed) or is not a torch file (for example
            the ``.safetensors`` weights).
    """
    import pickle
    import zipfile

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"training state {str(p)!r} not found")
    # torch.save writes a zip archive; torch.load would also read a safetensors weights file
    # (returning its tensors as if they were a state), so anything else is refused up front.
    if not zipfile.is_zipfile(p):
        hint = (
            " (that is checkpoint weights; the resume state is the .state.pt file beside it)"
            if p.suffix in (".safetensors", ".json")
            else ""
        )
        raise CheckpointError(f"{p}: not a training-state file written by torch.save{hint}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        zipfile.BadZipFile,
        EOFError,
        ValueError,
        KeyError,
    ) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{p}: refusing to load (not plain tensors/containers: {first})"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: training state must be a dict, got {type(state).__name__}")
    if restore_rng and "rng" in state:
        _set_rng_state(state["rng"])
    return state
