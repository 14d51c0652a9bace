"""Which model file a run uses: the models shipped in ``steelfast/weights/``, a user's path, and
the hash that names the weights a run used.

:func:`resolve_model` turns a model argument (a path, a bundled model's name, or None for the
shipped default) into a file; :func:`model_file_sha256` names the weights in a run's records.
Loading a file is :mod:`steelfast.checkpoint`'s job.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from steelfast._io import PathLike

__all__ = [
    "BUNDLED_MODELS",
    "bundled_checkpoint_path",
    "bundled_name",
    "default_checkpoint_path",
    "file_sha256",
    "model_file_sha256",
    "resolve_model",
]


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


def bundled_name(model: Any) -> Any:
    """``model``, or the path of the bundled model it names (``"default"``, ``"synthetic-unet"``:
    :data:`BUNDLED_MODELS`) when no file of that name exists; anything else is returned unchanged."""
    if isinstance(model, (str, os.PathLike)) and os.fspath(model) in BUNDLED_MODELS and not Path(model).is_file():
        return bundled_checkpoint_path(os.fspath(model))
    return model


def resolve_model(model: PathLike | None) -> Path:
    """The model file to use: ``model`` (a path, or the name of a bundled model: :func:`bundled_name`),
    or the shipped default when None.

    Raises:
        FileNotFoundError: The file (or the shipped default model) does not exist; the message
            says how to pass another one.
    """
    if model is not None:
        path = Path(bundled_name(model))
        if not path.is_file():
            raise FileNotFoundError(f"model not found: {path} (pass a .safetensors checkpoint or an .onnx file)")
        return path
    path = default_checkpoint_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"the default model {path} is missing (the package was installed without weights); "
            "pass a checkpoint with model=... (CLI: --model CKPT)"
        )
    return path


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of the file that holds a model's weights: the ``.safetensors`` file of a
    checkpoint given by either of its files, or an ONNX file itself."""
    p = Path(path)
    return file_sha256(p.with_suffix(".safetensors") if p.suffix.lower() == ".json" else p)
