"""Checkpoints in, models out: files that cannot run code when loaded.

A checkpoint is two files with the same stem:

* ``<stem>.safetensors``: the weights (``state_dict`` tensors, float32, contiguous). The
  safetensors format is a JSON header plus raw tensor bytes: loading it never unpickles anything.
* ``<stem>.json``: the metadata (:mod:`steelfast.model_metadata` lists its keys and checks them).

Both files are written to temporary names and moved into place with :func:`os.replace`, so a
crash or Ctrl-C never leaves a half-written file under the final name. Loading compares the
architecture, built on the ``meta`` device (no storage), with the tensor shapes in the weights
file's header before anything is allocated, and refuses weights holding NaN or infinity.

:func:`load_model` turns a checkpoint path or a module into ``(model, metadata)``. Which file a
run uses (a path, a bundled model's name, or the shipped default) is
:mod:`steelfast.model_files`'s job. The resume state of a training run lives in
:mod:`steelfast.training.state`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from steelfast._io import PathLike, atomic_write_bytes
from steelfast._version import __version__
from steelfast.model_metadata import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    merge_metadata,
    metadata_to_json,
    validate_metadata,
)
from steelfast.models import UNet, build_model, required_multiple
from steelfast.severstal import DEFAULT_MEAN, DEFAULT_STD, SHAPE

__all__ = [
    "checkpoint_files",
    "default_metadata",
    "load_checkpoint",
    "load_model",
    "read_metadata",
    "save_checkpoint",
    "unwrap_model",
]


def load_model(source: Any, metadata: Mapping[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Resolve a model argument into ``(model in eval mode, metadata)``.

    Args:
        source: A checkpoint path (``.safetensors`` or ``.json``), or a steelfast ``UNet``.
        metadata: Metadata for a module ``source`` (defaults to :func:`default_metadata`); its
            ``"architecture"`` always comes from the module (gate thresholds set after loading
            included), as in :func:`save_checkpoint`. Ignored for a path.

    Returns:
        The model on the CPU in eval mode and its metadata dict.

    Raises:
        FileNotFoundError: The checkpoint does not exist.
        TypeError: ``source`` is neither a path nor a module.
    """
    if isinstance(source, nn.Module):
        base = default_metadata(source)
        meta = base if metadata is None else {**metadata, "architecture": base["architecture"]}
        return source.eval(), meta
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"model checkpoint not found: {path}")
        return load_checkpoint(path)
    raise TypeError(f"model must be a checkpoint path or a torch module, got {type(source).__name__}")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The underlying module of a DDP/DataParallel wrapper or a ``torch.compile`` result."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def checkpoint_files(path: PathLike) -> tuple[Path, Path]:
    """``(weights, metadata)`` paths of checkpoint ``path`` (``<stem>.safetensors`` or ``<stem>.json``).

    Raises:
        CheckpointError: ``path`` ends with neither suffix.
    """
    p = Path(path)
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    if p.suffix != ".safetensors":
        raise CheckpointError(
            f"checkpoint path must end with .safetensors (or .json), got {str(path)!r}"
        )
    return p, p.with_suffix(".json")


def default_metadata(model: nn.Module) -> dict[str, Any]:
    """Metadata with neutral defaults for ``model`` (0.5 thresholds, no minimum area).

    Args:
        model: A :class:`~steelfast.models.UNet` (possibly wrapped).

    Returns:
        A dict with every key listed in the module docstring except ``weights_sha256``.
    """
    net = unwrap_model(model)
    config = _config_of(net)
    classes = int(config["classes"])
    return {
        "format": CHECKPOINT_FORMAT,
        "steelfast_version": __version__,
        "architecture": config,
        "classes": list(range(1, classes + 1)),
        "input": {
            "height": SHAPE[0],
            "width": SHAPE[1],
            "channels": int(config["in_channels"]),
            "multiple": required_multiple(net),
        },
        "normalization": {"mean": float(DEFAULT_MEAN), "std": float(DEFAULT_STD)},
        "postprocess": {"thresholds": [0.5] * classes, "min_areas": [0] * classes},
        "training": {},
    }


def _config_of(net: nn.Module) -> dict[str, Any]:
    config = getattr(net, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"model must be a steelfast UNet (with .config), got {type(net).__name__}")
    return copy.deepcopy(config)


def save_checkpoint(
    path: PathLike, model: nn.Module, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Save weights (safetensors) and metadata (JSON) atomically.

    Args:
        path: Destination ending in ``.safetensors``; the JSON goes beside it with the same stem.
            Parent folders are created.
        model: A :class:`~steelfast.models.UNet`, possibly wrapped in DDP or ``torch.compile``.
            Weights are stored as contiguous float32 on the CPU whatever the model's device,
            dtype or memory format.
        metadata: Keys to store; nested dicts are merged into :func:`default_metadata` (so
            ``{"postprocess": {"thresholds": [...]}}`` keeps the default ``min_areas``).
            ``"architecture"``, ``"format"`` and ``"steelfast_version"`` always come from the
            model and this package.

    Returns:
        The path of the weights file.

    Raises:
        CheckpointError: If the path or the merged metadata is invalid.
        TypeError: If ``model`` is not a steelfast UNet or metadata is not JSON-serialisable.
    """
    from safetensors.torch import save as st_save

    weights_path, meta_path = checkpoint_files(path)
    net = unwrap_model(model)
    base = default_metadata(net)
    meta = merge_metadata(base, metadata or {})
    meta["format"] = CHECKPOINT_FORMAT
    meta["steelfast_version"] = __version__
    meta["architecture"] = base["architecture"]
    validate_metadata(meta, str(meta_path))

    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous()
        if v.is_floating_point()
        else v.detach().to("cpu").contiguous()
        for k, v in net.state_dict().items()
    }
    blob = st_save(tensors, metadata={"format": CHECKPOINT_FORMAT})
    meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    text = metadata_to_json(meta)

    weights_path.parent.mkdir(parents=True, exist_ok=True)
    # Weights first, metadata last: the hash in the JSON pairs them, so a crash between the two
    # replaces is detected on load rather than silently mixing two saves.
    atomic_write_bytes(weights_path, blob, fsync=True)
    atomic_write_bytes(meta_path, (text + "\n").encode("utf-8"), fsync=True)
    return weights_path


def read_metadata(path: PathLike) -> dict[str, Any]:
    """Read and validate the JSON metadata of checkpoint ``path`` (``.safetensors`` or ``.json``).

    Raises:
        FileNotFoundError: If the metadata file is missing.
        CheckpointError: If it is not valid checkpoint metadata.
    """
    _, meta_path = checkpoint_files(path)
    if not meta_path.is_file():
        raise FileNotFoundError(f"checkpoint metadata {str(meta_path)!r} not found")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not valid JSON ({exc})") from None
    validate_metadata(meta, str(meta_path))
    return meta


def _header_shapes(blob: bytes, where: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header: a little-endian u64 length, then JSON."""
    try:
        (size,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8 : 8 + size])
        return {
            name: tuple(int(d) for d in entry["shape"])
            for name, entry in header.items()
            if name != "__metadata__"
        }
    except (struct.error, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CheckpointError(
            f"{where}: not a valid safetensors file (bad header: {type(exc).__name__}: {exc})"
        ) from None


def _check_architecture(
    arch: Any, shapes: Mapping[str, tuple[int, ...]], weights_path: Path, meta_path: Path
) -> list[str]:
    """Build ``arch`` on the meta device and compare its tensors with the header's ``shapes``.

    Returns:
        The state-dict names in the model's order.
    """
    try:
        with torch.device("meta"):
            skeleton = build_model(arch)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise CheckpointError(f"{meta_path}: bad architecture {arch!r} ({exc})") from None
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    if expected != dict(shapes):
        missing = sorted(set(expected) - set(shapes))
        unexpected = sorted(set(shapes) - set(expected))
        wrong = [
            f"{n} is {list(shapes[n])} in the file, {list(expected[n])} in the architecture"
            for n in expected
            if n in shapes and shapes[n] != expected[n]
        ]
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {unexpected[:3]}" if unexpected else "",
                wrong[0] if wrong else "",
            )
            if part
        )
        raise CheckpointError(
            f"{weights_path}: tensors do not fit the architecture in {meta_path.name} ({details})"
        )
    return list(expected)


def load_checkpoint(
    path: PathLike, map_location: str | torch.device = "cpu"
) -> tuple[UNet, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`. Never executes code from the files.

    Args:
        path: ``<stem>.safetensors`` or ``<stem>.json``.
        map_location: Device to put the model on.

    Returns:
        ``(model, metadata)``: the model in eval mode on ``map_location``, and the metadata dict.

    Raises:
        FileNotFoundError: If either file is missing.
        CheckpointError: If a file is malformed (for example a pickle renamed to
            ``.safetensors``), the weights do not match the metadata hash, the tensors do not
            fit the architecture (checked against the file's header before the model is built),
            or a weight is NaN or infinite.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    weights_path, meta_path = checkpoint_files(path)
    meta = read_metadata(meta_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"checkpoint weights {str(weights_path)!r} not found")
    blob = weights_path.read_bytes()
    expected = meta.get("weights_sha256")
    if expected is not None and hashlib.sha256(blob).hexdigest() != expected:
        raise CheckpointError(
            f"{weights_path}: weights do not match the hash in {meta_path.name} "
            "(files from different saves, or a corrupted file)"
        )
    # The architecture is checked against the header's shapes on the meta device (no storage)
    # before anything is allocated, so a crafted config cannot ask for gigabytes.
    order = _check_architecture(
        meta["architecture"], _header_shapes(blob, weights_path), weights_path, meta_path
    )
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights_path}: not a valid safetensors file ({exc})") from None
    for name in order:
        tensor = tensors[name]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{weights_path}: tensor {name!r} holds non-finite values (NaN or inf); "
                "the weights are unusable (a diverged training run?)"
            )
    try:
        model = build_model(meta["architecture"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{meta_path}: bad architecture {meta['architecture']!r} ({exc})"
        ) from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{weights_path}: tensors do not fit the architecture ({exc})"
        ) from None
    model.to(map_location).eval()
    return model, meta
