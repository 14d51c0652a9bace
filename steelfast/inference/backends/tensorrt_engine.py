"""TensorRT engines: an ONNX file in, a cached serialized engine out (TensorRT 10.x and 11.x).

:func:`build_tensorrt_engine` parses an ONNX file from
:func:`steelfast.inference.export.export_onnx` with the ``tensorrt`` Python API and builds an
engine with one optimization profile over the batch dimension, the way
:func:`~steelfast.inference.backends.tensorrt_plan.plan_build` decides for the installed major
version (on 11.x from the float16 ONNX model: the precision builder flags are gone), optionally
hardware- or version-compatible. Only the name-based tensor API is used.

The cache key (:func:`engine_cache_key`) is the ONNX file's SHA-256, the TensorRT version, the
GPU's name and compute capability, the precision, the profile shapes, the two compatibility
options and the build recipe (which network, which converter version). A later call with the
same key loads the file instead of building; another key gives a rebuild, and the engines of
older keys for the same ONNX file and GPU are removed. A JSON sidecar beside each engine records
its key. Layer timings are kept in a timing cache beside the engines.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steelfast._io import PathLike, atomic_path
from steelfast._validate import check_bool, check_choice
from steelfast.inference.backends.tensorrt_plan import (
    HARDWARE_COMPATIBILITY,
    PRECISIONS,
    BuildPlan,
    import_tensorrt,
    plan_build,
)
from steelfast.inference.errors import BackendUnavailableError
from steelfast.inference.onnx_file import INPUT_MULTIPLE, INPUT_NAME, read_onnx_metadata
from steelfast.model_files import file_sha256
from steelfast.severstal import SHAPE

__all__ = [
    "EngineKey",
    "build_tensorrt_engine",
    "default_cache_dir",
    "engine_cache_key",
    "read_sidecar",
]

log = logging.getLogger(__name__)


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
        hardware_compatibility: One of :data:`HARDWARE_COMPATIBILITY`.
        version_compatible: Whether the engine is version-compatible.
        build: The build recipe (:meth:`BuildPlan.describe`, and the float16 converter used).
    """

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    shapes: tuple[tuple[int, int, int], int, int, int]
    hardware_compatibility: str = "none"
    version_compatible: bool = False
    build: str = ""

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
            "hardware_compatibility": self.hardware_compatibility,
            "version_compatible": self.version_compatible,
            "build": self.build,
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
    height: int = SHAPE[0],
    width: int = SHAPE[1],
    hardware_compatibility: str = "none",
    version_compatible: bool = False,
    build: str = "",
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
        hardware_compatibility: One of :data:`HARDWARE_COMPATIBILITY`.
        version_compatible: Whether the engine is version-compatible.
        build: The build recipe (free text; part of the key).

    Returns:
        An :class:`EngineKey`.

    Raises:
        ValueError: A bad precision, batch profile, input size or compatibility option.
        TypeError: ``version_compatible`` is not a bool.
    """
    check_choice("precision", precision, PRECISIONS)
    if len(batch) != 3 or not all(isinstance(b, int) for b in batch) or not 1 <= batch[0] <= batch[1] <= batch[2]:
        raise ValueError(f"batch must be (min, opt, max) ints with 1 <= min <= opt <= max, got {batch!r}")
    if height <= 0 or width <= 0 or height % INPUT_MULTIPLE or width % INPUT_MULTIPLE:
        raise ValueError(f"height and width must be positive multiples of {INPUT_MULTIPLE}, got {height}x{width}")
    if not isinstance(gpu_name, str) or not gpu_name:
        raise ValueError(f"gpu_name must be a non-empty string, got {gpu_name!r}")
    check_choice("hardware_compatibility", hardware_compatibility, HARDWARE_COMPATIBILITY)
    check_bool("version_compatible", version_compatible)
    cc = compute_capability if isinstance(compute_capability, str) else "{}.{}".format(*compute_capability)
    return EngineKey(
        onnx_sha256=file_sha256(onnx_path),
        tensorrt_version=str(tensorrt_version),
        gpu_name=gpu_name,
        compute_capability=cc,
        precision=precision,
        shapes=(tuple(int(b) for b in batch), int(channels), int(height), int(width)),  # type: ignore[arg-type]
        hardware_compatibility=hardware_compatibility,
        version_compatible=bool(version_compatible),
        build=str(build),
    )


def default_cache_dir() -> Path:
    """Engine cache folder: ``$STEELFAST_CACHE/tensorrt`` when that is set, else
    ``$XDG_CACHE_HOME/steelfast/tensorrt`` (``~/.cache/steelfast/tensorrt`` without it)."""
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


def read_sidecar(engine_path: PathLike) -> dict[str, Any]:
    """The key recorded beside an engine (``<engine>.json``), or ``{}`` when there is none.

    Raises:
        ValueError: The sidecar exists but is not a JSON object.
    """
    sidecar = Path(engine_path).with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{sidecar} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{sidecar} must hold a JSON object, got {type(data).__name__}")
    return data


def _network_bytes(onnx_file: Path, plan: BuildPlan) -> bytes:
    if not plan.convert_to_fp16:
        return onnx_file.read_bytes()
    from steelfast.inference.onnx_file import load_onnx
    from steelfast.inference.onnx_fp16 import convert_to_fp16

    return convert_to_fp16(load_onnx(onnx_file)).SerializeToString()


def _configure(trt: Any, builder: Any, plan: BuildPlan, workspace_bytes: int | None) -> Any:
    config = builder.create_builder_config()
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.hardware_compatibility != "none":
        level = getattr(trt.HardwareCompatibilityLevel, plan.hardware_compatibility.upper(), None)
        if level is None:
            raise ValueError(
                f"hardware_compatibility={plan.hardware_compatibility!r} needs a TensorRT with "
                f"HardwareCompatibilityLevel.{plan.hardware_compatibility.upper()}; TensorRT {trt.__version__} has none"
            )
        config.hardware_compatibility_level = level
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    return config


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
    hardware_compatibility: str = "none",
    version_compatible: bool = False,
) -> Path:
    """Build (or find in the cache) a serialized TensorRT engine for an ONNX file.

    Args:
        onnx_path: ONNX file from :func:`steelfast.inference.export.export_onnx` (float32 or float16).
        cache_dir: Engine cache folder (default :func:`default_cache_dir`).
        precision: ``"fp16"`` or ``"fp32"`` (:mod:`~steelfast.inference.backends.tensorrt_plan` says what each means
            per TensorRT version).
        batch: Optimization profile over the batch dimension: (min, opt, max).
        height: Input height of the profile (default: the ``input`` size in the ONNX metadata).
        width: Input width of the profile (default: likewise).
        workspace_bytes: Builder workspace limit (default: TensorRT's own).
        device: CUDA device index whose name and compute capability enter the key.
        hardware_compatibility: One of :data:`HARDWARE_COMPATIBILITY`.
        version_compatible: Build a version-compatible engine (``BuilderFlag.VERSION_COMPATIBLE``).

    Returns:
        Path of the ``.engine`` file (a JSON sidecar beside it records the key).

    Raises:
        ImportError: ``tensorrt`` is missing or cannot build (the message says what to install).
        BackendUnavailableError: No CUDA device, an ONNX file TensorRT cannot parse, or a failed
            build (a ``RuntimeError``).
        ValueError: Bad arguments (see :func:`plan_build` and :func:`engine_cache_key`), or an
            unsupported TensorRT version.
    """
    import torch

    from steelfast.inference.onnx_fp16 import fp16_converter_version, onnx_precision

    trt = import_tensorrt(builder=True)
    if not torch.cuda.is_available():
        raise BackendUnavailableError("building a TensorRT engine needs a CUDA device; none is available")
    onnx_file = Path(onnx_path)
    meta = read_onnx_metadata(onnx_file)
    size = meta.get("input", {})
    height = int(height if height is not None else size.get("height", SHAPE[0]))
    width = int(width if width is not None else size.get("width", SHAPE[1]))
    channels = int(size.get("channels", 3))
    props = torch.cuda.get_device_properties(device)
    plan = plan_build(
        trt.__version__, precision, onnx_precision=onnx_precision(onnx_file),
        hardware_compatibility=hardware_compatibility, version_compatible=version_compatible,
        compute_capability=(props.major, props.minor),
    )
    recipe = plan.describe() + (f" ({fp16_converter_version()})" if plan.convert_to_fp16 else "")
    key = engine_cache_key(
        onnx_file, trt.__version__, props.name, (props.major, props.minor), precision,
        batch=batch, channels=channels, height=height, width=width,
        hardware_compatibility=hardware_compatibility, version_compatible=version_compatible, build=recipe,
    )
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    engine_path, sidecar, timing_path = _engine_paths(folder, key)
    if engine_path.is_file() and sidecar.is_file():
        log.info("TensorRT engine cache hit: %s", engine_path)
        return engine_path

    log.warning("building a TensorRT %s %s engine for %s (minutes on first use) ...", trt.__version__, precision, onnx_file.name)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network_flags = 0
    for flag in plan.network_flags:
        network_flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, flag))
    network = builder.create_network(network_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(_network_bytes(onnx_file, plan)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendUnavailableError(f"TensorRT {trt.__version__} could not parse {onnx_file}: {errors}")
    config = _configure(trt, builder, plan, workspace_bytes)
    profile = builder.create_optimization_profile()
    lo, opt, hi = key.shapes[0]
    profile.set_shape(INPUT_NAME, (lo, channels, height, width), (opt, channels, height, width), (hi, channels, height, width))
    config.add_optimization_profile(profile)
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} failed to build an engine for {onnx_file} (see its log above)"
        )
    with atomic_path(timing_path) as tmp:
        tmp.write_bytes(bytes(memoryview(timing.serialize())))
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(memoryview(serialized)))
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(key.as_dict(), indent=2) + "\n")
    _remove_stale(folder, key, engine_path)
    return engine_path
