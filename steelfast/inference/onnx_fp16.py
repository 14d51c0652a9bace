"""Half-precision ONNX models: a float32 ONNX model in, its float16 copy out.

The float16 copy is what TensorRT 11 builds FP16 engines from.

TensorRT 11 takes the precision from the tensors' types (strongly typed networks), so an FP16
engine needs an FP16 ONNX model. :func:`convert_to_fp16` (in memory), :func:`to_fp16_onnx` (file
to file) and ``export_onnx(..., precision="fp16")`` make it with onnxconverter-common's float16
converter, with three steelfast choices:

* the input stays float32 (the contract of every backend: a normalized float32 batch; the cast
  runs inside the model) and the output is float16 (the probabilities are computed in float16
  anyway; a float32 output would only double the copy back to the host);
* tensors without spatial extent (rank < 3: the gate's pooled features, logits, probabilities and
  its comparison with the gate thresholds) stay float32, with their weights and thresholds kept
  exact: they cost nothing, and the gate thresholds are tuned to the fourth decimal;
* ``Resize`` runs in float16 (the converter's default keeps it float32), with its ``roi`` and
  ``scales`` kept float32 as the ONNX standard requires.

The float16 model's probabilities agree with the float32 model's within the tolerance stated in
the README and checked by ``tests/test_onnx_fp16.py``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from steelfast._io import PathLike, atomic_path
from steelfast.inference.onnx_file import OUTPUT_NAME, load_onnx, read_onnx_metadata

__all__ = ["convert_to_fp16", "fp16_converter_version", "onnx_precision", "to_fp16_onnx"]

log = logging.getLogger(__name__)


def _import_float16() -> Any:
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ImportError(
            "converting an ONNX model to float16 needs onnxconverter-common: pip install 'steelfast[onnx]'"
        ) from None
    return float16


def fp16_converter_version() -> str:
    """``"onnxconverter-common X.Y.Z"``: the converter behind :func:`convert_to_fp16`.

    Raises:
        ImportError: onnxconverter-common is not installed.
    """
    _import_float16()
    from importlib.metadata import version

    return f"onnxconverter-common {version('onnxconverter-common')}"


def onnx_precision(model: Any) -> str:
    """``"fp16"`` if an ONNX model holds float16 weights, else ``"fp32"``.

    Args:
        model: An ONNX file path or an ``onnx.ModelProto``.

    Raises:
        TypeError: ``model`` is neither a path nor an ``onnx.ModelProto``.
        FileNotFoundError: ``model`` is a path that does not exist.
        ValueError: ``model`` is not a readable ONNX file.
    """
    import onnx
    from onnx import TensorProto

    proto = load_onnx(model) if isinstance(model, (str, os.PathLike)) else model
    if not isinstance(proto, onnx.ModelProto):
        raise TypeError(f"model must be an ONNX file path or an onnx.ModelProto, got {type(model).__name__}")
    half = any(t.data_type == TensorProto.FLOAT16 for t in proto.graph.initializer)
    return "fp16" if half else "fp32"


def _float_ranks(model: Any) -> dict[str, int]:
    """Rank of every float32 tensor whose shape is known (after shape inference)."""
    from onnx import TensorProto

    ranks = {t.name: len(t.dims) for t in model.graph.initializer if t.data_type == TensorProto.FLOAT}
    graph = model.graph
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor = info.type.tensor_type
        if tensor.elem_type == TensorProto.FLOAT and tensor.HasField("shape"):
            ranks[info.name] = len(tensor.shape.dim)
    return ranks


def _small_nodes(model: Any) -> list[str]:
    """Nodes that only make (or, making no float tensor, only read) float tensors of rank < 3."""
    ranks = _float_ranks(model)
    names = []
    for node in model.graph.node:
        made = [ranks[o] for o in node.output if o in ranks]
        read = [ranks[i] for i in node.input if i in ranks]
        touched = made or read
        if touched and max(touched) < 3:
            names.append(node.name)
    return names


def _needs_float32(node: Any, slot: int) -> bool:
    from onnx import TensorProto, helper

    if node.op_type == "Resize":
        return slot in (1, 2)  # roi and scales are tensor(float) in every Resize version
    if node.op_type == "Cast":
        to = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "to")
        return to == TensorProto.FLOAT
    return False


def _restore_float32_weights(half: Any, original: Any) -> None:
    """Give back their exact float32 values to weights that only float32 consumers read.

    The converter rounds every weight to float16, also those of the nodes it keeps float32 (which
    then read them through a Cast back to float32), and Resize's scales. The casts of restored
    weights, now float32 to float32, are removed.
    """
    from onnx import TensorProto

    exact = {t.name: t for t in original.graph.initializer if t.data_type == TensorProto.FLOAT}
    uses: dict[str, list[tuple[Any, int]]] = {}
    for node in half.graph.node:
        for slot, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, slot))
    restored = set()
    for tensor in half.graph.initializer:
        readers = uses.get(tensor.name, [])
        if tensor.name in exact and readers and all(_needs_float32(n, s) for n, s in readers):
            tensor.CopyFrom(exact[tensor.name])
            restored.add(tensor.name)
    no_ops = [n for n in half.graph.node if n.op_type == "Cast" and n.input[0] in restored]
    renamed = {n.output[0]: n.input[0] for n in no_ops}
    for node in no_ops:
        half.graph.node.remove(node)
    for node in half.graph.node:
        for slot, name in enumerate(node.input):
            node.input[slot] = renamed.get(name, name)
    gone = {t.name for t in half.graph.initializer} | set(renamed)  # weights carry their own types
    kept = [v for v in half.graph.value_info if v.name not in gone]
    del half.graph.value_info[:]
    half.graph.value_info.extend(kept)


def _half_output(half: Any) -> None:
    """Drop the converter's final cast back to float32: the probabilities stay float16."""
    from onnx import TensorProto, helper

    for node in half.graph.node:
        if node.op_type == "Cast" and OUTPUT_NAME in node.output:
            node.attribute.remove(next(a for a in node.attribute if a.name == "to"))
            node.attribute.append(helper.make_attribute("to", TensorProto.FLOAT16))
    for output in half.graph.output:
        if output.name == OUTPUT_NAME:
            output.type.tensor_type.elem_type = TensorProto.FLOAT16


def convert_to_fp16(model: Any) -> Any:
    """Half-precision copy of a float32 ONNX model from :func:`steelfast.inference.export.export_onnx`.

    Weights and activations become float16 except the small tensors named in the module docstring;
    the input stays float32 and the output becomes float16. The steelfast metadata is kept.

    Args:
        model: An ``onnx.ModelProto`` (not modified).

    Returns:
        A new, checked ``onnx.ModelProto``.

    Raises:
        TypeError: ``model`` is not an ``onnx.ModelProto``.
        ValueError: ``model`` is already float16, or has no ``"probabilities"`` output.
        ImportError: onnxconverter-common is not installed.
    """
    import onnx

    float16 = _import_float16()
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"model must be an onnx.ModelProto, got {type(model).__name__}")
    if onnx_precision(model) == "fp16":
        raise ValueError("the ONNX model already holds float16 weights; convert its float32 original")
    if OUTPUT_NAME not in [o.name for o in model.graph.output]:
        raise ValueError(f"the ONNX model has no {OUTPUT_NAME!r} output; export it with export_onnx")
    inferred = onnx.shape_inference.infer_shapes(model)
    for index, node in enumerate(inferred.graph.node):
        node.name = node.name or f"steelfast_node_{index}"  # the converter blocks nodes by name
    blocked_ops = [op for op in float16.DEFAULT_OP_BLOCK_LIST if op != "Resize"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # "the float32 number ... will be truncated": tiny weights
        half = float16.convert_float_to_float16(
            inferred, keep_io_types=True, op_block_list=blocked_ops, node_block_list=_small_nodes(inferred)
        )
    clipped = sum("truncated" in str(w.message) for w in caught)
    if clipped:
        log.info("float16 conversion: %d weights below 1e-7 or above 1e4 in size were moved to that range", clipped)
    for other in (w for w in caught if "truncated" not in str(w.message)):
        log.warning("float16 conversion: %s", other.message)
    _restore_float32_weights(half, model)
    _half_output(half)
    onnx.checker.check_model(half, full_check=True)
    return half


def to_fp16_onnx(src: PathLike, dst: PathLike) -> Path:
    """Write the half-precision copy (:func:`convert_to_fp16`) of an ONNX file, atomically.

    Args:
        src: A float32 ONNX file from :func:`steelfast.inference.export.export_onnx`.
        dst: Output ``.onnx`` file (may be ``src`` itself).

    Returns:
        The path written.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        ValueError: ``dst`` does not end in ``.onnx``; ``src`` is not a readable ONNX file, has no
            steelfast metadata, or is already float16.
        ImportError: onnxconverter-common is not installed.
    """
    import onnx

    out = Path(dst)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"ONNX output must end with .onnx, got {str(dst)!r}")
    _import_float16()
    read_onnx_metadata(src)  # the steelfast contract: named input/output, metadata
    half = convert_to_fp16(load_onnx(src))
    with atomic_path(out) as tmp:
        onnx.save_model(half, str(tmp))
    return out
