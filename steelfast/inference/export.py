"""ONNX export: a checkpoint or model in, a self-describing ``.onnx`` file out (and read back).

:func:`export_onnx` writes the U-Net with a sigmoid appended, so the file maps an input ``"image"``
float32 (N, C, H, W) to ``"probabilities"`` (N, classes, H, W). The batch dimension is dynamic, and
so are height and width (any multiple of 32). The checkpoint metadata (normalization,
post-processing thresholds, ...) is stored in the file's ``metadata_props`` under ``"steelfast"``,
so an ONNX file is as self-describing as a checkpoint; :func:`read_onnx_metadata` reads it back.

``export_onnx(..., precision="fp16")`` writes the half-precision model that TensorRT 11 builds
from (:mod:`steelfast.inference.onnx_fp16` says how it is made: float32 input, float16 output).

The tensor contract every backend keeps (names, the multiple of 32, the metadata key) and the
readers of an ONNX file are in :mod:`steelfast.inference.onnx_file`; the TensorRT engine builder
and its cache live in :mod:`steelfast.inference.backends.tensorrt_engine`.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from steelfast._io import PathLike, atomic_path
from steelfast._validate import check_choice, check_int
from steelfast.checkpoint import load_model
from steelfast.inference.onnx_file import INPUT_MULTIPLE, INPUT_NAME, METADATA_KEY, OUTPUT_NAME
from steelfast.model_metadata import validate_metadata

__all__ = ["DEFAULT_OPSET", "ONNX_PRECISIONS", "ProbabilityModel", "export_onnx"]

log = logging.getLogger(__name__)

#: ONNX opset written by default (the torch.export-based exporter's lowest native opset).
DEFAULT_OPSET = 18
#: Precisions of an exported ONNX file.
ONNX_PRECISIONS = ("fp32", "fp16")


class ProbabilityModel(nn.Module):
    """Wrap a logits model so that it returns probabilities (``sigmoid(model(x))``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (N, classes, H, W), same dtype as ``x``, for input (N, C, H, W)."""
        return torch.sigmoid(self.model(x))


def export_onnx(
    model: Any,
    path: PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    metadata: Mapping[str, Any] | None = None,
    sample_shape: tuple[int, int] = (64, 128),
    precision: str = "fp32",
) -> Path:
    """Export a model to ONNX with a dynamic batch (and height/width) dimension.

    Args:
        model: A checkpoint path or a steelfast ``UNet`` (see :func:`steelfast.checkpoint.load_model`).
        path: Output ``.onnx`` file, written atomically.
        opset: ONNX opset version, at least 17.
        metadata: Metadata to embed for a module ``model`` (a checkpoint brings its own).
        sample_shape: (H, W) of the example input used for tracing; any multiple of 32 works,
            the exported graph accepts every multiple of 32.
        precision: ``"fp32"``, or ``"fp16"`` for the half-precision model of
            :func:`steelfast.inference.onnx_fp16.convert_to_fp16` (float32 input, float16 output; needs
            onnxconverter-common).

    Returns:
        The path written.

    Raises:
        TypeError: ``opset`` is not an int.
        ValueError: ``opset`` < 17, a ``path`` not ending in ``.onnx``, a bad ``sample_shape`` or
            ``precision``, or metadata that :func:`steelfast.model_metadata.validate_metadata` rejects.
        FileNotFoundError: The checkpoint does not exist.
        ImportError: ``precision="fp16"`` without onnxconverter-common.
    """
    import onnx

    check_choice("precision", precision, ONNX_PRECISIONS)
    if precision == "fp16":
        from steelfast.inference.onnx_fp16 import convert_to_fp16, fp16_converter_version

        fp16_converter_version()  # onnxconverter-common missing: fail before the (slow) export
    out = Path(path)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"ONNX output must end with .onnx, got {str(path)!r}")
    opset = check_int("opset", opset, low=17)
    h, w = sample_shape
    if h <= 0 or w <= 0 or h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
        raise ValueError(f"sample_shape must be positive multiples of {INPUT_MULTIPLE}, got {sample_shape!r}")
    net, meta = load_model(model, metadata)
    validate_metadata(meta, str(out))  # refuse to write a file read_onnx_metadata would reject
    channels = int(meta.get("input", {}).get("channels", getattr(net, "in_channels", 3)))
    wrapped = ProbabilityModel(net).eval().to("cpu", torch.float32)
    example = torch.zeros(2, channels, h, w)
    torch_log = logging.getLogger("torch.onnx")
    level = torch_log.level
    with warnings.catch_warnings():
        # torch's exporter emits deprecation warnings and log lines from its own internals
        # (pytree, torchvision ops, opset conversion); they say nothing about this model.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch_log.setLevel(logging.ERROR)
        try:
            program = _export(wrapped, example, opset)
        finally:
            torch_log.setLevel(level)
    proto = program.model_proto
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(meta, sort_keys=True)
    onnx.checker.check_model(proto)
    if precision == "fp16":
        proto = convert_to_fp16(proto)
    with atomic_path(out) as tmp:
        onnx.save_model(proto, str(tmp))
    return out


def _export(wrapped: nn.Module, example: torch.Tensor, opset: int) -> Any:
    batch = torch.export.Dim("batch", min=1, max=4096)
    rows = torch.export.Dim("rows", min=1, max=1024)
    cols = torch.export.Dim("cols", min=1, max=1024)
    return torch.onnx.export(
        wrapped,
        (example,),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch, 2: INPUT_MULTIPLE * rows, 3: INPUT_MULTIPLE * cols},),
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )
