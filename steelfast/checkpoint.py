"""Checkpoints that cannot run code when loaded.

A checkpoint is two files with the same stem:

* ``<stem>.safetensors``: the weights (``state_dict`` tensors, float32, contiguous). The
  safetensors format is a JSON header plus raw tensor bytes: loading it never unpickles anything.
* ``<stem>.json``: the metadata, a JSON object with these keys:

  - ``"format"``: ``"steelfast-checkpoint/1"``;
  - ``"steelfast_version"``: the version that wrote it;
  - ``"architecture"``: the :attr:`steelfast.models.UNet.config` dict that rebuilds the model;
  - ``"classes"``: class ids in channel order, ``[1, 2, 3, 4]``;
  - ``"input"``: ``{"height", "width", "channels"}`` the model was trained/validated at;
  - ``"normalization"``: ``{"mean", "std"}`` in 0..1 units (``(x/255 − mean)/std``);
  - ``"postprocess"``: ``{"thresholds": [4 floats], "min_areas": [4 ints]}`` used by inference,
    optionally ``"tta": true`` when they were tuned on flip-averaged probabilities (inference then
    averages flips by default);
  - ``"training"``: free-form summary (data, epochs, scores, ...);
  - ``"weights_sha256"``: hash of the weights file, checked on load so that a weights file and a
    metadata file from different saves are never paired silently.

Both files are written to temporary names and moved into place with :func:`os.replace`, so a
crash or Ctrl-C never leaves a half-written file under the final name. Loading compares the
architecture, built on the ``meta`` device (no storage), with the tensor shapes in the weights
file's header before anything is allocated, and refuses weights holding NaN or infinity.

Resume state (optimizer, epoch, RNG states, history) lives in a third file,
``<stem>.state.pt``, written with :func:`torch.save` and read with
``torch.load(weights_only=True)``, which refuses any pickled object other than tensors and plain
containers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from steelfast._io import atomic_write_bytes
from steelfast._version import __version__
from steelfast.models import UNet, build_model, required_multiple

__all__ = [
    "BUNDLED_MODELS",
    "CHECKPOINT_FORMAT",
    "bundled_checkpoint_path",
    "CheckpointError",
    "default_checkpoint_path",
    "default_metadata",
    "load_checkpoint",
    "load_training_state",
    "read_metadata",
    "save_checkpoint",
    "save_training_state",
    "state_path_for",
    "unwrap_model",
    "validate_metadata",
]

CHECKPOINT_FORMAT = "steelfast-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, malformed, unsafe, or does not match its metadata."""


#: Models shipped in ``steelfast/weights/``: name -> what it is.
BUNDLED_MODELS: dict[str, str] = {
    "default": "gated EfficientNet-Lite0 U-Net trained on real Severstal images (the default)",
    "synthetic-unet": "the seed's baseline U-Net (0.6 M parameters) trained on synthetic images only",
}


def bundled_checkpoint_path(name: str = "default") -> Path:
    """Path of a model shipped with the package (see :data:`BUNDLED_MODELS`).

    Raises:
        ValueError: ``name`` is not a bundled model.
    """
    if name not in BUNDLED_MODELS:
        raise ValueError(f"no bundled model {name!r} (bundled: {sorted(BUNDLED_MODELS)})")
    return Path(__file__).resolve().parent / "weights" / f"{name}.safetensors"


def default_checkpoint_path() -> Path:
    """Path of the shipped default model, ``steelfast/weights/default.safetensors``."""
    return bundled_checkpoint_path("default")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The underlying module of a DDP/DataParallel wrapper or a ``torch.compile`` result."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    if p.suffix != ".safetensors":
        raise CheckpointError(
            f"checkpoint path must end with .safetensors (or .json), got {str(path)!r}"
        )
    return p, p.with_suffix(".json")


def state_path_for(path: str | os.PathLike[str]) -> Path:
    """Path of the resume-state file that belongs to checkpoint ``path`` (``<stem>.state.pt``)."""
    weights, _ = _paths(path)
    return weights.with_suffix(".state.pt")


def default_metadata(model: nn.Module) -> dict[str, Any]:
    """Metadata with neutral defaults for ``model`` (0.5 thresholds, no minimum area).

    Args:
        model: A :class:`~steelfast.models.UNet` (possibly wrapped).

    Returns:
        A dict with every key listed in the module docstring except ``weights_sha256``.
    """
    from steelfast.severstal import DEFAULT_MEAN, DEFAULT_STD

    net = unwrap_model(model)
    config = _config_of(net)
    classes = int(config["classes"])
    return {
        "format": CHECKPOINT_FORMAT,
        "steelfast_version": __version__,
        "architecture": config,
        "classes": list(range(1, classes + 1)),
        "input": {
            "height": 256,
            "width": 1600,
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


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and key != "architecture":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _json_default(obj: object) -> object:
    # numpy scalars/arrays and Paths show up in training summaries.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"metadata value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


def _finite_or_none(obj: Any) -> Any:
    # Training summaries hold NaN for undefined means (a class with no defects in the validation
    # set); strict JSON has no NaN, so those become null.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def validate_metadata(meta: Mapping[str, Any], where: str) -> None:
    """Raise :class:`CheckpointError` unless ``meta`` has the documented keys with sane values.

    Args:
        meta: Metadata as described in the module docstring (a checkpoint's JSON, or the copy
            embedded in an ONNX file).
        where: The file the metadata came from; every message starts with it.
    """
    if not isinstance(meta, Mapping):
        raise CheckpointError(f"{where}: metadata must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{where}: unknown checkpoint format {meta.get('format')!r} "
            f"(expected {CHECKPOINT_FORMAT!r})"
        )
    for key in ("architecture", "classes", "input", "normalization", "postprocess"):
        if key not in meta:
            raise CheckpointError(f"{where}: metadata lacks the {key!r} key")
    classes = meta["classes"]
    if not isinstance(classes, list) or not classes:
        raise CheckpointError(f"{where}: 'classes' must be a non-empty list, got {classes!r}")
    post = meta["postprocess"]
    if not isinstance(post, Mapping):
        raise CheckpointError(f"{where}: 'postprocess' must be an object, got {post!r}")
    thresholds, min_areas = post.get("thresholds"), post.get("min_areas")
    if not isinstance(thresholds, list) or len(thresholds) != len(classes):
        raise CheckpointError(
            f"{where}: postprocess thresholds must list {len(classes)} values, got {thresholds!r}"
        )
    if not all(isinstance(t, (int, float)) and 0.0 <= t < 1.0 for t in thresholds):
        raise CheckpointError(
            f"{where}: postprocess thresholds must be in [0, 1), got {thresholds!r}"
        )
    if not isinstance(min_areas, list) or len(min_areas) != len(classes):
        raise CheckpointError(
            f"{where}: postprocess min_areas must list {len(classes)} values, got {min_areas!r}"
        )
    if not all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in min_areas):
        raise CheckpointError(
            f"{where}: postprocess min_areas must be ints >= 0, got {min_areas!r}"
        )
    if not isinstance(post.get("tta", False), bool):
        raise CheckpointError(f"{where}: postprocess tta must be true or false, got {post['tta']!r}")
    norm = meta["normalization"]
    if (
        not isinstance(norm, Mapping)
        or not all(
            isinstance(norm.get(k), (int, float)) and math.isfinite(norm[k])
            for k in ("mean", "std")
        )
        or norm["std"] <= 0
    ):
        raise CheckpointError(f"{where}: normalization must be {{'mean', 'std' > 0}}, got {norm!r}")
    inp = meta["input"]
    if not isinstance(inp, Mapping) or not all(
        isinstance(inp.get(k), int) for k in ("height", "width", "channels")
    ):
        raise CheckpointError(
            f"{where}: input must be {{'height', 'width', 'channels'}} ints, got {inp!r}"
        )


def save_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, metadata: Mapping[str, Any] | None = None
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

    weights_path, meta_path = _paths(path)
    net = unwrap_model(model)
    base = default_metadata(net)
    meta = _merge(base, metadata or {})
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
    text = json.dumps(
        _finite_or_none(meta), indent=2, sort_keys=False, default=_json_default, allow_nan=False
    )

    weights_path.parent.mkdir(parents=True, exist_ok=True)
    # Weights first, metadata last: the hash in the JSON pairs them, so a crash between the two
    # replaces is detected on load rather than silently mixing two saves.
    atomic_write_bytes(weights_path, blob, fsync=True)
    atomic_write_bytes(meta_path, (text + "\n").encode("utf-8"), fsync=True)
    return weights_path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate the JSON metadata of checkpoint ``path`` (``.safetensors`` or ``.json``).

    Raises:
        FileNotFoundError: If the metadata file is missing.
        CheckpointError: If it is not valid checkpoint metadata.
    """
    _, meta_path = _paths(path)
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
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
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

    weights_path, meta_path = _paths(path)
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


def save_training_state(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
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
    path: str | os.PathLike[str], *, restore_rng: bool = True
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
