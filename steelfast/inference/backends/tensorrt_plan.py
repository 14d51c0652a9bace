"""Which TensorRT is installed: a TensorRT version in, how to build an engine with it out (no GPU).

:func:`import_tensorrt` imports the ``tensorrt`` package or says in one line what to install (the
``-libs`` packages come from NVIDIA's index). :func:`plan_build` decides, from the TensorRT
version alone, how :func:`steelfast.inference.backends.tensorrt_engine.build_tensorrt_engine` builds:

=====  ===========  =========  ==============================================================
major  ONNX file    precision  network
=====  ===========  =========  ==============================================================
10     float32      fp16       the float32 network with ``BuilderFlag.FP16`` (weak typing)
10     float16      fp16       the float16 network, ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``
11     float32      fp16       the float16 copy of :func:`steelfast.inference.onnx_fp16.convert_to_fp16`
                               (strongly typed, as every 11.x network: the precision builder
                               flags are gone)
11     float16      fp16       the float16 network as it is
both   float32      fp32       the float32 network, no precision flag
=====  ===========  =========  ==============================================================

No INT8. Portable engines: ``hardware_compatibility="ampere_plus"`` (any GPU of compute
capability 8.0 or newer) or ``"same_compute_capability"`` sets ``HardwareCompatibilityLevel``;
``version_compatible=True`` sets ``BuilderFlag.VERSION_COMPATIBLE`` (the engine carries a lean
runtime and runs on later TensorRT versions; deserializing it needs ``engine_host_code_allowed``,
which :class:`~steelfast.inference.backends.tensorrt_backend.TensorRTBackend` sets for engines
whose sidecar says so). Both
are slower than a plain engine.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import Any

from steelfast._validate import check_bool, check_choice

__all__ = [
    "HARDWARE_COMPATIBILITY",
    "PRECISIONS",
    "SUPPORTED_MAJORS",
    "TENSORRT_INSTALL",
    "BuildPlan",
    "import_tensorrt",
    "plan_build",
    "tensorrt_major",
]

#: TensorRT major versions the builder knows.
SUPPORTED_MAJORS = (10, 11)
#: Engine precisions.
PRECISIONS = ("fp16", "fp32")
#: ``hardware_compatibility`` values: none, or a ``trt.HardwareCompatibilityLevel`` in lower case.
HARDWARE_COMPATIBILITY = ("none", "ampere_plus", "same_compute_capability")
#: How to install a TensorRT that can build engines.
TENSORRT_INSTALL = (
    "pip install 'steelfast[tensorrt]' (or: pip install tensorrt --extra-index-url https://pypi.nvidia.com); "
    "its tensorrt-cu12-libs / tensorrt-cu13-libs parts download from NVIDIA's index (https://pypi.nvidia.com) "
    "during the install, so that index must be reachable"
)


def import_tensorrt(*, builder: bool = True) -> Any:
    """Import ``tensorrt``, or say in one line what to install.

    Args:
        builder: Also require ``tensorrt.Builder`` (a lean or dispatch runtime has none).

    Returns:
        The ``tensorrt`` module.

    Raises:
        ImportError: ``tensorrt`` is missing, does not load (its libraries are absent: only the
            bindings wheel was installed), or cannot build; the message names what to install.
    """
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:
        lean = _lean_runtime()
        if lean is not None:
            raise ImportError(
                f"only a TensorRT runtime without the builder ({lean}) is installed: it runs version-compatible "
                f"engines but cannot build them; install the full TensorRT: {TENSORRT_INSTALL}"
            ) from None
        cause = "" if isinstance(exc, ModuleNotFoundError) and exc.name == "tensorrt" else f" ({exc})"
        raise ImportError(f"the tensorrt package is missing or incomplete{cause}: {TENSORRT_INSTALL}") from None
    if builder and not hasattr(trt, "Builder"):
        version = getattr(trt, "__version__", "?")
        raise ImportError(
            f"the installed tensorrt {version} has no Builder (a lean or dispatch runtime), so it cannot build "
            f"engines; install the full TensorRT: {TENSORRT_INSTALL}"
        )
    return trt


def _lean_runtime() -> str | None:
    for name in ("tensorrt_lean", "tensorrt_lean_bindings", "tensorrt_dispatch", "tensorrt_dispatch_bindings"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


@dataclass(frozen=True)
class BuildPlan:
    """How :func:`~steelfast.inference.backends.tensorrt_engine.build_tensorrt_engine` builds with one
    TensorRT version.

    Attributes:
        tensorrt_major: The TensorRT major version.
        precision: ``"fp16"`` or ``"fp32"``.
        convert_to_fp16: Parse the float16 copy of the (float32) ONNX file, not the file itself.
        network_flags: ``trt.NetworkDefinitionCreationFlag`` members to set.
        builder_flags: ``trt.BuilderFlag`` members to set.
        hardware_compatibility: One of :data:`HARDWARE_COMPATIBILITY`.
        version_compatible: Whether ``BuilderFlag.VERSION_COMPATIBLE`` is among the builder flags.
    """

    tensorrt_major: int
    precision: str
    convert_to_fp16: bool
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    hardware_compatibility: str
    version_compatible: bool

    def describe(self) -> str:
        """One line for the cache key and the sidecar: which network, which flags."""
        network = "float16 copy of the ONNX file" if self.convert_to_fp16 else "ONNX file as it is"
        flags = ", ".join([f"network {f}" for f in self.network_flags] + [f"builder {f}" for f in self.builder_flags])
        typing = "strongly typed" if self.tensorrt_major >= 11 or "STRONGLY_TYPED" in self.network_flags else "weakly typed"
        head = f"TensorRT {self.tensorrt_major} {self.precision}: {network}, {typing}"
        return head + (f", {flags}" if flags else "")


def tensorrt_major(version: str) -> int:
    """The major version of a TensorRT version string such as ``"10.3.0.26"``.

    Raises:
        ValueError: ``version`` does not start with a number.
    """
    match = re.match(r"\s*(\d+)(\.|$)", str(version))
    if match is None:
        raise ValueError(f"not a TensorRT version: {version!r}")
    return int(match.group(1))


def plan_build(
    tensorrt_version: str,
    precision: str = "fp16",
    *,
    onnx_precision: str = "fp32",
    hardware_compatibility: str = "none",
    version_compatible: bool = False,
    compute_capability: tuple[int, int] | None = None,
) -> BuildPlan:
    """Decide how to build an engine with a TensorRT version (pure; needs no TensorRT).

    Args:
        tensorrt_version: ``tensorrt.__version__``.
        precision: ``"fp16"`` or ``"fp32"``.
        onnx_precision: ``"fp32"`` or ``"fp16"``: the ONNX file's own precision
            (:func:`steelfast.inference.onnx_fp16.onnx_precision`).
        hardware_compatibility: One of :data:`HARDWARE_COMPATIBILITY`.
        version_compatible: Build a version-compatible engine.
        compute_capability: ``(major, minor)`` of the building GPU, when known: ``"ampere_plus"``
            needs 8.0 or newer.

    Returns:
        A :class:`BuildPlan`.

    Raises:
        ValueError: An unsupported TensorRT major version, a bad option, a float16 ONNX file with
            ``precision="fp32"``, or ``"ampere_plus"`` on a GPU older than Ampere.
        TypeError: ``version_compatible`` is not a bool.
    """
    major = tensorrt_major(tensorrt_version)
    if major not in SUPPORTED_MAJORS:
        raise ValueError(
            f"TensorRT {tensorrt_version} is not supported: steelfast builds engines with TensorRT "
            f"{' and '.join(f'{m}.x' for m in SUPPORTED_MAJORS)}"
        )
    check_choice("precision", precision, PRECISIONS)
    check_choice("onnx_precision", onnx_precision, ("fp32", "fp16"))
    check_choice("hardware_compatibility", hardware_compatibility, HARDWARE_COMPATIBILITY)
    check_bool("version_compatible", version_compatible)
    if onnx_precision == "fp16" and precision == "fp32":
        raise ValueError("a float16 ONNX file builds only an fp16 engine; export a float32 file for precision='fp32'")
    if hardware_compatibility == "ampere_plus" and compute_capability is not None and compute_capability[0] < 8:
        cc = "{}.{}".format(*compute_capability)
        raise ValueError(f"hardware_compatibility='ampere_plus' needs an Ampere or newer GPU (8.0+) to build on, got {cc}")
    half_network = onnx_precision == "fp16"
    convert = major >= 11 and precision == "fp16" and not half_network
    network_flags = ("STRONGLY_TYPED",) if major == 10 and half_network else ()
    builder_flags = ("FP16",) if major == 10 and precision == "fp16" and not half_network else ()
    if version_compatible:
        builder_flags += ("VERSION_COMPATIBLE",)
    return BuildPlan(major, precision, convert, network_flags, builder_flags, hardware_compatibility, version_compatible)
