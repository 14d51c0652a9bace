"""Inference backends: a model (checkpoint, ONNX file or module) and a name in, a ready backend out.

Every backend maps a normalized float32 batch (N, C, H, W) to probabilities (N, classes, H, W)
(:mod:`.base`). The ones here:

``torch``
    PyTorch (:mod:`.torch_backend`). On the CPU: weights and activations in bfloat16 (when the
    CPU has native bfloat16, else float32), channels-last memory format, ``torch.inference_mode``,
    and ``torch.compile`` (inductor) when a C++ compiler is found. On CUDA: float16 and
    channels-last.
``onnxruntime``
    ONNX Runtime's CPU provider (:mod:`.onnxruntime_backend`) on a file from
    :func:`steelfast.inference.export.export_onnx` (float32, or float16 with float16
    probabilities).
``tensorrt``
    A serialized TensorRT engine (FP16; TensorRT 10 or 11) built and cached by
    :func:`~steelfast.inference.backends.tensorrt_engine.build_tensorrt_engine` (its recipe per
    version in :mod:`.tensorrt_plan`), run with the TensorRT runtime on torch CUDA memory
    (:mod:`.tensorrt_backend`).

``backend="auto"`` picks, in this order (:func:`resolve_backend`): ``tensorrt`` when CUDA is
available and the ``tensorrt`` package imports with its builder; ``torch`` on CUDA when CUDA is available;
otherwise ``torch`` on the CPU. On the 2-core AVX-512-BF16 machine this was tuned on, the CPU
``torch`` backend (compiled, bfloat16, channels-last) ran about 40 images/s at 256x1600 against
about 16 for ONNX Runtime (float32), and even without ``torch.compile`` or bfloat16 the torch
backend (float32 channels-last, about 24) stayed ahead, so ``auto`` never picks ONNX Runtime
for a checkpoint. For an ``.onnx`` file, which the ``torch`` backend cannot run, ``auto`` picks
``tensorrt`` when it can run, else ``onnxruntime``.

:func:`make_backend` checks that the chosen backend's package is installed (and, for
``tensorrt``, that there is a CUDA device) before it loads or exports anything. (The modules are
named ``*_backend`` so that none shadows the ``torch``, ``onnxruntime`` or ``tensorrt`` package as
an attribute of this package.)
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from steelfast._io import PathLike
from steelfast.checkpoint import load_model
from steelfast.inference.backends.base import Backend
from steelfast.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from steelfast.inference.backends.tensorrt_backend import TensorRTBackend
from steelfast.inference.backends.tensorrt_engine import build_tensorrt_engine
from steelfast.inference.backends.tensorrt_plan import (
    SUPPORTED_MAJORS,
    TENSORRT_INSTALL,
    import_tensorrt,
    tensorrt_major,
)
from steelfast.inference.backends.torch_backend import TorchBackend
from steelfast.inference.errors import BackendUnavailableError
from steelfast.inference.export import export_onnx
from steelfast.inference.onnx_file import read_onnx_metadata

__all__ = ["BACKENDS", "available_backends", "make_backend", "resolve_backend"]

log = logging.getLogger(__name__)

#: Backend names accepted by :func:`make_backend` (plus ``"auto"``).
BACKENDS = ("torch", "onnxruntime", "tensorrt")


def _tensorrt_importable() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


@functools.lru_cache(maxsize=1)
def _tensorrt_builds() -> bool:
    """``tensorrt`` imports with its builder, in a version the builder supports."""
    try:
        trt = import_tensorrt(builder=True)
    except ImportError as exc:
        log.info("the tensorrt backend is not available: %s", exc)
        return False
    return tensorrt_major(trt.__version__) in SUPPORTED_MAJORS


def _onnxruntime_importable() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def available_backends() -> list[str]:
    """Backends that can run on this machine, in :func:`resolve_backend`'s order of preference."""
    names = []
    if torch.cuda.is_available() and _tensorrt_importable() and _tensorrt_builds():
        names.append("tensorrt")
    names.append("torch")
    if _onnxruntime_importable():
        names.append("onnxruntime")
    return names


def resolve_backend(backend: str = "auto", model: Any = None) -> str:
    """Turn ``"auto"`` into a concrete backend name (see the module docstring for the rule).

    Args:
        backend: ``"auto"`` or one of :data:`BACKENDS`.
        model: The model to run, if known: an ``.onnx`` file makes ``auto`` choose a backend that
            runs ONNX (``tensorrt``, else ``onnxruntime``).

    Raises:
        ValueError: ``backend`` is not ``"auto"`` or one of :data:`BACKENDS`.
        ImportError: ``auto`` for an ONNX file, and neither onnxruntime nor tensorrt can run.
    """
    if backend == "auto":
        names = available_backends()
        if _is_onnx(model):
            names = [n for n in names if n != "torch"]
            if not names:
                raise ImportError(
                    f"running the ONNX file {str(model)!r} needs onnxruntime: pip install 'steelfast[onnx]' "
                    "(or pass a .safetensors checkpoint)"
                )
        return names[0]
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose 'auto' or one of {', '.join(BACKENDS)}")
    return backend


def _is_onnx(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() == ".onnx"


def make_backend(
    model: Any,
    backend: str = "auto",
    *,
    metadata: Mapping[str, Any] | None = None,
    device: str | None = None,
    compile: bool | str = "auto",
    cache_dir: PathLike | None = None,
    max_batch_size: int = 32,
) -> Backend:
    """Build a backend from a checkpoint, an ONNX file or a model.

    Args:
        model: Checkpoint path (``.safetensors``/``.json``), ONNX file (``.onnx``; the
            ``onnxruntime`` and ``tensorrt`` backends only), or a steelfast ``UNet``.
        backend: ``"auto"``, ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``.
        metadata: Metadata for a module ``model`` (default: neutral defaults).
        device: For ``torch``: ``"cpu"`` or ``"cuda"`` (default: CUDA when available).
        compile: For ``torch``: see :class:`TorchBackend`.
        cache_dir: For ``onnxruntime`` and ``tensorrt``: where exported ONNX files and engines
            are kept (default: a temporary folder for ONNX,
            :func:`~steelfast.inference.backends.tensorrt_engine.default_cache_dir` for engines).
        max_batch_size: For ``tensorrt``: the largest batch of the optimization profile.

    Returns:
        A :class:`Backend`.

    Raises:
        ValueError: Unknown backend, or an ONNX file given to the ``torch`` backend.
        FileNotFoundError: The model file does not exist.
        ImportError: The backend's package is not installed (checked first).
        BackendUnavailableError: The backend needs CUDA and there is none (a ``RuntimeError``).
    """
    name = resolve_backend(backend, model)
    if name == "onnxruntime" and not _onnxruntime_importable():
        raise ImportError("the onnxruntime backend needs onnxruntime and onnx: pip install 'steelfast[onnx]'")
    if name == "tensorrt" and not _tensorrt_importable():
        raise ImportError(f"the tensorrt backend needs the tensorrt package: {TENSORRT_INSTALL}")
    if name == "tensorrt":
        import_tensorrt(builder=True)  # it imports and can build, or a one-line message
    if name == "tensorrt" and not torch.cuda.is_available():
        raise BackendUnavailableError("the tensorrt backend needs a CUDA device; none is available")
    if isinstance(model, (str, os.PathLike)) and not Path(model).exists():
        raise FileNotFoundError(f"model file not found: {model}")
    if name == "torch":
        if _is_onnx(model):
            raise ValueError(f"the torch backend needs a checkpoint, got an ONNX file {str(model)!r}")
        net, meta = load_model(model, metadata)
        return TorchBackend(net, meta, device=device, compile=compile)
    onnx_path = Path(model) if _is_onnx(model) else None
    with contextlib.ExitStack() as stack:
        if onnx_path is None:
            folder = Path(cache_dir) if cache_dir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
            onnx_path = export_onnx(model, folder / "model.onnx", metadata=metadata)
        if name == "onnxruntime":
            return OnnxRuntimeBackend(onnx_path)
        opt = min(8, max_batch_size)
        engine = build_tensorrt_engine(onnx_path, cache_dir=cache_dir, batch=(1, opt, max_batch_size))
        return TensorRTBackend(engine, read_onnx_metadata(onnx_path))
    raise AssertionError("unreachable")  # pragma: no cover
