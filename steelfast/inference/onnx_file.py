"""An exported ONNX file's contract: the tensor names, the size rule and the embedded metadata.

Every backend keeps these names: the input :data:`INPUT_NAME` is float32 (N, C, H, W), already
normalized, with H and W multiples of :data:`INPUT_MULTIPLE`; the output :data:`OUTPUT_NAME` is
(N, classes, H, W) probabilities. The checkpoint metadata sits in the file's ``metadata_props``
under :data:`METADATA_KEY`; :func:`read_onnx_metadata` reads and checks it, :func:`load_onnx`
reads the file. Writing the file is :mod:`steelfast.inference.export`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steelfast._io import PathLike
from steelfast.model_metadata import CheckpointError, validate_metadata

__all__ = ["INPUT_MULTIPLE", "INPUT_NAME", "METADATA_KEY", "OUTPUT_NAME", "load_onnx", "read_onnx_metadata"]

#: Height and width of every model input are multiples of this (the U-Net pools five times; a
#: model whose metadata gives ``input.multiple`` needs that multiple too).
INPUT_MULTIPLE = 32
#: Name of the ONNX/TensorRT input tensor: float32 (N, C, H, W), already normalized.
INPUT_NAME = "image"
#: Name of the ONNX/TensorRT output tensor: (N, classes, H, W) probabilities, float32 in a float32
#: model and float16 in a float16 one.
OUTPUT_NAME = "probabilities"
#: Key of the steelfast metadata (JSON) in an ONNX file's ``metadata_props``.
METADATA_KEY = "steelfast"


def read_onnx_metadata(path: PathLike) -> dict[str, Any]:
    """Read the steelfast metadata embedded by :func:`steelfast.inference.export.export_onnx`.

    The metadata goes through the same checks as a checkpoint's
    (:func:`steelfast.model_metadata.validate_metadata`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file is not ONNX or carries no steelfast metadata.
        steelfast.model_metadata.CheckpointError: (a ``ValueError``) The metadata is not valid JSON
            or has a bad value; the message names the ONNX file.
    """
    p = Path(path)
    proto = load_onnx(p)
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            try:
                meta = json.loads(entry.value)
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"{p}: steelfast metadata is not valid JSON ({exc})") from None
            validate_metadata(meta, str(p))
            return meta
    raise ValueError(f"{p} has no steelfast metadata; export it with `steelfast export`")


def load_onnx(path: PathLike) -> Any:
    """Read an ONNX file as an ``onnx.ModelProto`` (external data files are not read).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file is not ONNX.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    try:
        return onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others; all mean "not an ONNX file"
        raise ValueError(f"{path} is not a readable ONNX file ({type(exc).__name__}: {exc})") from None
