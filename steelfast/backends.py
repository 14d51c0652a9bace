"""Inference backends: one interface, probabilities for a batch.

Every backend maps a normalized batch ``x`` float32 (N, C, H, W) (H, W multiples of 32; see
:func:`steelfast.images.to_model_input`) to probabilities (N, classes, H, W) as a NumPy array of
float32 or float16 (:meth:`Backend.predict_proba`). The ones here:

``torch``
    PyTorch. On the CPU: weights and activations in bfloat16 (when the CPU has native bfloat16,
    else float32), channels-last memory format, ``torch.inference_mode``, and ``torch.compile``
    (inductor) when a C++ compiler is found. On CUDA: float16 and channels-last.
``onnxruntime``
    ONNX Runtime's CPU provider on a file from :func:`steelfast.export.export_onnx` (float32, or
    float16 with float16 probabilities).
``tensorrt``
    A serialized TensorRT engine (FP16; TensorRT 10 or 11) built and cached by
    :func:`steelfast.tensorrt_engine.build_tensorrt_engine`, run with the TensorRT runtime on torch
    CUDA memory.

``backend="auto"`` picks, in this order (:func:`resolve_backend`): ``tensorrt`` when CUDA is
available and the ``tensorrt`` package imports with its builder; ``torch`` on CUDA when CUDA is available;
otherwise ``torch`` on the CPU. On the 2-core AVX-512-BF16 machine this was tuned on, the CPU
``torch`` backend (compiled, bfloat16, channels-last) ran about 40 images/s at 256x1600 against
about 16 for ONNX Runtime (float32), and even without ``torch.compile`` or bfloat16 the torch
backend (float32 channels-last, about 24) stayed ahead, so ``auto`` never picks ONNX Runtime
for a checkpoint. For an ``.onnx`` file, which the ``torch`` backend cannot run, ``auto`` picks
``tensorrt`` when it can run, else ``onnxruntime``.

:func:`make_backend` checks that the chosen backend's package is installed (and, for
``tensorrt``, that there is a CUDA device) before it loads or exports anything.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import functools
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from steelfast._device import cpu_has_native_bf16
from steelfast.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    ProbabilityModel,
    export_onnx,
    file_sha256,
    load_model,
    read_onnx_metadata,
)
from steelfast._io import PathLike
from steelfast.inference.errors import BackendUnavailableError
from steelfast.models import UNet, inference_graph
from steelfast.onnx_fp16 import onnx_precision
from steelfast.tensorrt_engine import build_tensorrt_engine, read_sidecar
from steelfast.tensorrt_plan import SUPPORTED_MAJORS, TENSORRT_INSTALL, import_tensorrt, tensorrt_major

__all__ = [
    "BACKENDS",
    "Backend",
    "OnnxRuntimeBackend",
    "TensorRTBackend",
    "TorchBackend",
    "available_backends",
    "make_backend",
    "resolve_backend",
]

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


def _check_batch(x: Any, channels: int | None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"predict_proba expects a float32 numpy array (N, C, H, W), got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"predict_proba expects float32 input, got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"predict_proba expects shape (N, C, H, W), got {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"the model takes {channels} input channels, got shape {x.shape}")
    if x.shape[2] % 32 or x.shape[3] % 32:
        raise ValueError(f"height and width must be multiples of 32 (pad the images), got shape {x.shape}")
    return x


class Backend(abc.ABC):
    """A model ready to run: ``predict_proba`` maps a normalized batch to probabilities.

    Attributes:
        name: ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``.
        device: ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``: the dtype the model computes in.
        metadata: The checkpoint metadata (normalization, post-processing, input size, ...).
        preferred_batch_size: The batch size this backend runs best at (used when the caller
            gives none).
    """

    name: str = ""
    device: str = "cpu"
    precision: str = "fp32"
    preferred_batch_size: int = 1

    def __init__(self, metadata: Mapping[str, Any]) -> None:
        self.metadata = dict(metadata)
        self.channels = int(self.metadata.get("input", {}).get("channels", 3))

    def predict_proba(self, x: Any) -> np.ndarray:
        """Probabilities for a batch.

        Args:
            x: float32 (N, C, H, W), normalized, H and W multiples of 32.

        Returns:
            np.ndarray: float32 or float16 (N, classes, H, W), values in [0, 1].

        Raises:
            TypeError: ``x`` is not a float32 array.
            ValueError: ``x`` has the wrong rank, channel count or size.
        """
        batch = _check_batch(x, self.channels)
        if batch.shape[0] == 0:
            classes = len(self.metadata.get("classes", [1, 2, 3, 4]))
            return np.zeros((0, classes, *batch.shape[2:]), np.float32)
        return self._run(batch)

    @abc.abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray:
        """Backend-specific forward pass of a validated, non-empty batch."""

    def weights_sha256(self) -> str | None:
        """Hex SHA-256 that identifies the weights: the checkpoint's ``weights_sha256`` from the
        metadata, or None when unknown (subclasses know more)."""
        value = self.metadata.get("weights_sha256")
        return str(value) if value else None

    def close(self) -> None:
        """Release resources (sessions, GPU memory). The backend is unusable afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"


class TorchBackend(Backend):
    """PyTorch eager or compiled inference.

    Args:
        model: A steelfast ``UNet`` (logits model) in eval mode.
        metadata: Its checkpoint metadata.
        device: ``"cpu"`` or ``"cuda"`` (default: CUDA when available).
        precision: ``"bf16"``, ``"fp16"`` or ``"fp32"`` (default: ``"bf16"`` on a CPU with native
            bfloat16, ``"fp16"`` on CUDA, else ``"fp32"``).
        channels_last: Use the channels-last memory format (faster convolutions on CPU and GPU).
        compile: ``True``, ``False`` or ``"auto"`` (compile on the CPU when a C++ compiler is on
            the PATH). Compilation happens on the first batch of each new shape (seconds); if it
            fails, a warning is logged and the backend runs eagerly.
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        metadata: Mapping[str, Any],
        *,
        device: str | None = None,
        precision: str | None = None,
        channels_last: bool = True,
        compile: bool | str = "auto",
    ) -> None:
        super().__init__(metadata)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("device='cuda' was asked for but CUDA is not available")
        if precision is None:
            precision = "fp16" if device == "cuda" else ("bf16" if cpu_has_native_bf16() else "fp32")
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        if precision not in dtypes:
            raise ValueError(f"precision must be one of {sorted(dtypes)}, got {precision!r}")
        if compile not in (True, False, "auto"):
            raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
        self.device = device
        self.precision = precision
        self.dtype = dtypes[precision]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.preferred_batch_size = 8 if device == "cuda" else 1
        if compile == "auto":
            compile = device == "cpu" and any(shutil.which(c) for c in ("c++", "g++", "clang++"))
        self.compiled = bool(compile)
        # A copy: converting dtype and memory format in place would change the caller's model.
        # Compiled on the CPU, the rewritten graph (split skip concatenations, exp-based ELU)
        # runs about 10 % faster (bench/bench_inference.py); eagerly it would only add kernels.
        fast = self.compiled and device == "cpu" and isinstance(model, UNet)
        if hasattr(model, "fused_for_inference"):
            net = model.fused_for_inference()  # batch norms folded into the convolutions
        else:
            net = inference_graph(model) if fast else copy.deepcopy(model)
        net = ProbabilityModel(net).eval().to(device=device, dtype=self.dtype, memory_format=self.memory_format)
        for p in net.parameters():
            p.requires_grad_(False)
        # float16 output only where the model computes in float16: inductor refuses to mix
        # bfloat16 and float16 in one kernel, and NumPy has no bfloat16.
        self._eager = _OutputModel(
            net, self.dtype, self.memory_format, torch.float16 if self.dtype == torch.float16 else torch.float32
        )
        self._forward: Any = self._eager
        if self.compiled:
            with _quiet_torch():
                self._forward = torch.compile(self._eager, dynamic=False)
        self._shapes: set[tuple[int, ...]] = set()

    def _pad_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Pad a short batch to an already compiled batch size instead of compiling again."""
        n, rest = x.shape[0], tuple(x.shape[1:])
        bigger = sorted(s[0] for s in self._shapes if s[1:] == rest and s[0] > n)
        if (n, *rest) in self._shapes or not bigger:
            self._shapes.add((n, *rest))
            return x
        pad = x.new_zeros((bigger[0] - n, *rest))
        return torch.cat([x, pad])

    def _run(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        with torch.inference_mode():
            t = torch.from_numpy(x).to(self.device, non_blocking=True)
            if self.compiled:
                t = self._pad_batch(t)
                try:
                    with _quiet_torch():
                        out = self._forward(t)
                except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back, loudly
                    log.warning(
                        "torch.compile failed (%s: %s); running the model eagerly (slower)",
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "",
                    )
                    self.compiled = False
                    self._forward = self._eager
                    out = self._forward(t)
            else:
                out = self._forward(t)
            return out[:n].cpu().numpy()

    def weights_sha256(self) -> str:
        """The checkpoint's hash from the metadata, else a hash of the parameters as run."""
        known = super().weights_sha256()
        if known is not None:
            return known
        digest = hashlib.sha256()
        for key, value in self._eager.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().cpu().float().contiguous().numpy().tobytes())
        return digest.hexdigest()


@contextlib.contextmanager
def _quiet_torch() -> Any:
    """Silence deprecation warnings that torch's compiler raises from its own internals."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


class _OutputModel(nn.Module):
    """Float32 NCHW input in, probabilities out as a contiguous (N, classes, H, W) ``out_dtype`` tensor.

    The input conversion is part of the module so that a compiled graph fuses it into one kernel.
    """

    def __init__(self, net: nn.Module, dtype: torch.dtype, memory_format: torch.memory_format,
                 out_dtype: torch.dtype) -> None:
        super().__init__()
        self.net = net
        self.dtype = dtype
        self.memory_format = memory_format
        self.out_dtype = out_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype=self.dtype, memory_format=self.memory_format)
        return self.net(x).to(self.out_dtype).contiguous()


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime (CPU provider) on an exported ONNX file.

    Args:
        onnx_path: File written by :func:`steelfast.export.export_onnx`.
        threads: Intra-op threads (default: ONNX Runtime's, one per core).
        providers: Execution providers (default ``["CPUExecutionProvider"]``).
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: PathLike, *, threads: int | None = None, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        super().__init__(read_onnx_metadata(onnx_path))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.onnx_path = Path(onnx_path)
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=providers or ["CPUExecutionProvider"]
        )
        self.precision = onnx_precision(self.onnx_path)
        self.device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"

    def _run(self, x: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x)})
        return out

    def weights_sha256(self) -> str | None:
        """The checkpoint's hash from the embedded metadata, else the ONNX file's."""
        known = super().weights_sha256()
        return known if known is not None or not self.onnx_path.is_file() else file_sha256(self.onnx_path)


class TensorRTBackend(Backend):
    """A TensorRT engine run with the TensorRT runtime on torch CUDA memory.

    The input and output dtypes are read from the engine by name into :attr:`io_dtypes` (float32
    input and float16 output for an engine built from a float16 ONNX model, float32 both for one
    built with TensorRT 10's FP16 flag). A version-compatible engine (its sidecar says so) is deserialized with
    ``engine_host_code_allowed``: it runs the lean runtime it carries.

    Args:
        engine_path: Serialized engine from :func:`steelfast.tensorrt_engine.build_tensorrt_engine`.
        metadata: The model's metadata (from the ONNX file the engine was built from).
        device: CUDA device index.

    Raises:
        ImportError: ``tensorrt`` is missing (the message says what to install).
        BackendUnavailableError: No CUDA device, or the engine cannot be deserialized (e.g. built
            by another TensorRT version); a ``RuntimeError``.
    """

    name = "tensorrt"
    device = "cuda"
    precision = "fp16"

    def __init__(self, engine_path: PathLike, metadata: Mapping[str, Any], *, device: int = 0) -> None:
        trt = import_tensorrt(builder=False)
        super().__init__(metadata)
        if not torch.cuda.is_available():
            raise BackendUnavailableError("the tensorrt backend needs a CUDA device; none is available")
        built = read_sidecar(engine_path)
        self.precision = str(built.get("precision", "fp16"))
        self._torch_device = torch.device("cuda", device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if built.get("version_compatible"):
            self._runtime.engine_host_code_allowed = True  # our own cache: a trusted plan
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BackendUnavailableError(
                f"TensorRT {trt.__version__} could not deserialize {engine_path} (built by another TensorRT or for "
                "another GPU, or a version-compatible engine without its .json sidecar)"
            )
        self.context = self.engine.create_execution_context()
        self.io_dtypes = {
            self.engine.get_tensor_name(i): _torch_dtype(trt, self.engine.get_tensor_dtype(self.engine.get_tensor_name(i)))
            for i in range(self.engine.num_io_tensors)
        }
        self.preferred_batch_size = 8
        self._stream = torch.cuda.Stream(device=self._torch_device)

    def _run(self, x: np.ndarray) -> np.ndarray:
        with torch.cuda.stream(self._stream):
            inp = torch.from_numpy(x).pin_memory().to(self._torch_device, non_blocking=True)
            inp = inp.to(self.io_dtypes[INPUT_NAME]).contiguous()
            if not self.context.set_input_shape(INPUT_NAME, tuple(inp.shape)):
                raise ValueError(f"input shape {tuple(inp.shape)} is outside the engine's optimization profile")
            out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), dtype=self.io_dtypes[OUTPUT_NAME], device=self._torch_device)
            self.context.set_tensor_address(INPUT_NAME, inp.data_ptr())
            self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
            if not self.context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed (see the log above)")
            result = out.to(torch.float16 if out.dtype == torch.float16 else torch.float32).cpu()
        self._stream.synchronize()
        return result.numpy()

    def close(self) -> None:
        self.context = None
        self.engine = None


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    if dtype not in table:
        raise RuntimeError(f"unsupported TensorRT tensor dtype {dtype}")
    return table[dtype]


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
            are kept (default: a temporary folder for ONNX, :func:`default_cache_dir` for engines).
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
