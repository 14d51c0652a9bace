"""Model export: ONNX files (any runtime) and TensorRT engines (NVIDIA GPUs).

ONNX
    :func:`export_onnx` writes the U-Net with a sigmoid appended, so the file maps an input
    ``"image"`` float32 (N, C, H, W) to ``"probabilities"`` float32 (N, classes, H, W). The batch
    dimension is dynamic, and so are height and width (any multiple of 32). The checkpoint
    metadata (normalization, post-processing thresholds, ...) is stored in the file's
    ``metadata_props`` under ``"steelfast"``, so an ONNX file is as self-describing as a
    checkpoint; :func:`read_onnx_metadata` reads it back.

TensorRT
    :func:`build_tensorrt_engine` parses the ONNX file with the ``tensorrt`` Python API, builds an
    FP16 engine with one optimization profile over the batch dimension, and keeps it on disk under
    a key made of the ONNX file's SHA-256, the TensorRT version, the GPU's name and compute
    capability, the precision and the profile shapes (:func:`engine_cache_key`). A later call with
    the same key loads the file instead of building; a new TensorRT version, GPU, model or
    precision gives a new key and a rebuild, and the engines of older keys for the same ONNX file
    and GPU are removed. Layer timings are kept in a timing cache beside the engines, which makes
    rebuilds much faster. The ``tensorrt`` package is imported only inside these functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from steelfast._atomic import atomic_path

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "EngineKey",
    "ProbabilityModel",
    "build_tensorrt_engine",
    "default_cache_dir",
    "engine_cache_key",
    "export_onnx",
    "file_sha256",
    "load_model",
    "read_onnx_metadata",
]

PathLike = Union[str, "os.PathLike[str]"]
log = logging.getLogger(__name__)

#: ONNX opset written by default (the torch.export-based exporter's lowest native opset).
DEFAULT_OPSET = 18
#: Name of the ONNX/TensorRT input tensor: float32 (N, C, H, W), already normalized.
INPUT_NAME = "image"
#: Name of the ONNX/TensorRT output tensor: float32 (N, classes, H, W) probabilities.
OUTPUT_NAME = "probabilities"
_METADATA_KEY = "steelfast"


class ProbabilityModel(nn.Module):
    """Wrap a logits model so that it returns probabilities (``sigmoid(model(x))``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (N, classes, H, W), same dtype as ``x``, for input (N, C, H, W)."""
        return torch.sigmoid(self.model(x))


def load_model(source: Any, metadata: Mapping[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Resolve a model argument into ``(model in eval mode, metadata)``.

    Args:
        source: A checkpoint path (``.safetensors`` or ``.json``), or a steelfast ``UNet``.
        metadata: Metadata for a module ``source`` (defaults to
            :func:`steelfast.checkpoint.default_metadata`); ignored for a path.

    Returns:
        The model on the CPU in eval mode and its metadata dict.

    Raises:
        FileNotFoundError: The checkpoint does not exist.
        TypeError: ``source`` is neither a path nor a module.
    """
    from steelfast.checkpoint import default_metadata, load_checkpoint

    if isinstance(source, nn.Module):
        meta = dict(metadata) if metadata is not None else default_metadata(source)
        return source.eval(), meta
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"model checkpoint not found: {path}")
        return load_checkpoint(path)
    raise TypeError(f"model must be a checkpoint path or a torch module, got {type(source).__name__}")


def export_onnx(
    model: Any,
    path: PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    metadata: Mapping[str, Any] | None = None,
    sample_shape: tuple[int, int] = (64, 128),
) -> Path:
    """Export a model to ONNX with a dynamic batch (and height/width) dimension.

    Args:
        model: A checkpoint path or a steelfast ``UNet`` (see :func:`load_model`).
        path: Output ``.onnx`` file, written atomically.
        opset: ONNX opset version, at least 17.
        metadata: Metadata to embed for a module ``model`` (a checkpoint brings its own).
        sample_shape: (H, W) of the example input used for tracing; any multiple of 32 works,
            the exported graph accepts every multiple of 32.

    Returns:
        The path written.

    Raises:
        ValueError: ``opset`` < 17, a ``path`` not ending in ``.onnx``, a bad ``sample_shape``,
            or metadata that :func:`steelfast.checkpoint.validate_metadata` rejects.
        FileNotFoundError: The checkpoint does not exist.
    """
    import onnx

    out = Path(path)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"ONNX output must end with .onnx, got {str(path)!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 17:
        raise ValueError(f"opset must be an int >= 17, got {opset!r}")
    h, w = sample_shape
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ValueError(f"sample_shape must be positive multiples of 32, got {sample_shape!r}")
    net, meta = load_model(model, metadata)
    from steelfast.checkpoint import validate_metadata

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
    entry.key = _METADATA_KEY
    entry.value = json.dumps(meta, sort_keys=True)
    onnx.checker.check_model(proto)
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
        dynamic_shapes=({0: batch, 2: 32 * rows, 3: 32 * cols},),
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )


def read_onnx_metadata(path: PathLike) -> dict[str, Any]:
    """Read the steelfast metadata embedded by :func:`export_onnx`.

    The metadata goes through the same checks as a checkpoint's
    (:func:`steelfast.checkpoint.validate_metadata`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file is not ONNX or carries no steelfast metadata.
        steelfast.checkpoint.CheckpointError: (a ``ValueError``) The metadata is not valid JSON
            or has a bad value; the message names the ONNX file.
    """
    import onnx

    from steelfast.checkpoint import CheckpointError, validate_metadata

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"ONNX file not found: {p}")
    try:
        proto = onnx.load_model(str(p), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others; all mean "not an ONNX file"
        raise ValueError(f"{p} is not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    for entry in proto.metadata_props:
        if entry.key == _METADATA_KEY:
            try:
                meta = json.loads(entry.value)
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"{p}: steelfast metadata is not valid JSON ({exc})") from None
            validate_metadata(meta, str(p))
            return meta
    raise ValueError(f"{p} has no steelfast metadata; export it with `steelfast export`")


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine depends on.

    Attributes:
        onnx_sha256: Hash of the ONNX file.
        tensorrt_version: ``tensorrt.__version__``.
        gpu_name: CUDA device name, e.g. ``"NVIDIA H100 80GB HBM3"``.
        compute_capability: ``"major.minor"``, e.g. ``"9.0"``.
        precision: ``"fp16"`` or ``"fp32"``.
        shapes: Optimization profile ``((min N, opt N, max N), C, H, W)``.
    """

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    shapes: tuple[tuple[int, int, int], int, int, int]

    def gpu_slug(self) -> str:
        """File-name-safe GPU identity."""
        return re.sub(r"[^A-Za-z0-9]+", "-", self.gpu_name).strip("-").lower() + f"-sm{self.compute_capability}"

    def digest(self) -> str:
        """Short stable hash of all fields."""
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields."""
        return {
            "onnx_sha256": self.onnx_sha256,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
            "shapes": [list(self.shapes[0]), *self.shapes[1:]],
        }


def engine_cache_key(
    onnx_path: PathLike,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int] | str,
    precision: str = "fp16",
    *,
    batch: tuple[int, int, int] = (1, 8, 32),
    channels: int = 3,
    height: int = 256,
    width: int = 1600,
) -> EngineKey:
    """The cache key of a TensorRT engine (pure Python; needs no GPU).

    Args:
        onnx_path: The ONNX file the engine is built from (hashed).
        tensorrt_version: Version string of the TensorRT library.
        gpu_name: CUDA device name.
        compute_capability: ``(major, minor)`` or ``"major.minor"``.
        precision: ``"fp16"`` or ``"fp32"``.
        batch: Optimization profile over the batch: (min, opt, max), 1 <= min <= opt <= max.
        channels: Input channels.
        height: Input height (a multiple of 32).
        width: Input width (a multiple of 32).

    Returns:
        An :class:`EngineKey`.

    Raises:
        ValueError: A bad precision, batch profile or input size.
    """
    if precision not in ("fp16", "fp32"):
        raise ValueError(f"precision must be 'fp16' or 'fp32', got {precision!r}")
    if len(batch) != 3 or not all(isinstance(b, int) for b in batch) or not 1 <= batch[0] <= batch[1] <= batch[2]:
        raise ValueError(f"batch must be (min, opt, max) ints with 1 <= min <= opt <= max, got {batch!r}")
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise ValueError(f"height and width must be positive multiples of 32, got {height}x{width}")
    if not isinstance(gpu_name, str) or not gpu_name:
        raise ValueError(f"gpu_name must be a non-empty string, got {gpu_name!r}")
    cc = compute_capability if isinstance(compute_capability, str) else "{}.{}".format(*compute_capability)
    return EngineKey(
        onnx_sha256=file_sha256(onnx_path),
        tensorrt_version=str(tensorrt_version),
        gpu_name=gpu_name,
        compute_capability=cc,
        precision=precision,
        shapes=(tuple(int(b) for b in batch), int(channels), int(height), int(width)),  # type: ignore[arg-type]
    )


def default_cache_dir() -> Path:
    """Engine cache folder: ``$STEELFAST_CACHE/tensorrt`` or ``~/.cache/steelfast/tensorrt``."""
    root = os.environ.get("STEELFAST_CACHE")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "steelfast"
    return base / "tensorrt"


def _engine_paths(cache_dir: Path, key: EngineKey) -> tuple[Path, Path, Path]:
    stem = f"{key.onnx_sha256[:16]}-{key.gpu_slug()}-trt{key.tensorrt_version}-{key.precision}-{key.digest()}"
    timing = cache_dir / f"timing-{key.gpu_slug()}-trt{key.tensorrt_version}.cache"
    return cache_dir / f"{stem}.engine", cache_dir / f"{stem}.json", timing


def _remove_stale(cache_dir: Path, key: EngineKey, keep: Path) -> None:
    """Delete engines built earlier for the same ONNX file and GPU under another key."""
    for sidecar in cache_dir.glob(f"{key.onnx_sha256[:16]}-{key.gpu_slug()}-*.json"):
        engine = sidecar.with_suffix(".engine")
        if engine != keep:
            engine.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)


def build_tensorrt_engine(
    onnx_path: PathLike,
    *,
    cache_dir: PathLike | None = None,
    precision: str = "fp16",
    batch: tuple[int, int, int] = (1, 8, 32),
    height: int | None = None,
    width: int | None = None,
    workspace_bytes: int | None = None,
    device: int = 0,
) -> Path:
    """Build (or find in the cache) a serialized TensorRT engine for an ONNX file.

    Args:
        onnx_path: ONNX file from :func:`export_onnx`.
        cache_dir: Engine cache folder (default :func:`default_cache_dir`).
        precision: ``"fp16"`` (the builder may use FP16 kernels) or ``"fp32"``.
        batch: Optimization profile over the batch dimension: (min, opt, max).
        height: Input height of the profile (default: the ``input`` size in the ONNX metadata).
        width: Input width of the profile (default: likewise).
        workspace_bytes: Builder workspace limit (default: TensorRT's own).
        device: CUDA device index whose name and compute capability enter the key.

    Returns:
        Path of the ``.engine`` file (a JSON sidecar beside it records the key).

    Raises:
        ImportError: ``tensorrt`` is not installed.
        RuntimeError: No CUDA device, an ONNX parse error, or a failed build.
        ValueError: Bad arguments (see :func:`engine_cache_key`).
    """
    import tensorrt as trt  # noqa: PLC0415 - optional dependency

    if not torch.cuda.is_available():
        raise RuntimeError("building a TensorRT engine needs a CUDA device; none is available")
    onnx_file = Path(onnx_path)
    meta = read_onnx_metadata(onnx_file)
    size = meta.get("input", {})
    height = int(height if height is not None else size.get("height", 256))
    width = int(width if width is not None else size.get("width", 1600))
    channels = int(size.get("channels", 3))
    props = torch.cuda.get_device_properties(device)
    key = engine_cache_key(
        onnx_file, trt.__version__, props.name, (props.major, props.minor), precision,
        batch=batch, channels=channels, height=height, width=width,
    )
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    engine_path, sidecar, timing_path = _engine_paths(folder, key)
    if engine_path.is_file() and sidecar.is_file():
        log.info("TensorRT engine cache hit: %s", engine_path)
        return engine_path

    log.warning("building a TensorRT %s engine for %s (minutes on first use) ...", precision, onnx_file.name)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_file.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_file}: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    profile = builder.create_optimization_profile()
    lo, opt, hi = key.shapes[0]
    profile.set_shape(INPUT_NAME, (lo, channels, height, width), (opt, channels, height, width), (hi, channels, height, width))
    config.add_optimization_profile(profile)
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_file} (see the log above)")
    with atomic_path(timing_path) as tmp:
        tmp.write_bytes(bytes(memoryview(timing.serialize())))
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(memoryview(serialized)))
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(key.as_dict(), indent=2) + "\n")
    _remove_stale(folder, key, engine_path)
    return engine_path
