"""How the engine is built per TensorRT version (a pure function), and the one-line message when
TensorRT is missing or cannot build. No TensorRT is needed: the message tests put a stand-in
*module* (no Builder, or none at all) in ``sys.modules`` and never build anything."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steelfast import cli
from steelfast.inference.backends.tensorrt_plan import (
    HARDWARE_COMPATIBILITY,
    import_tensorrt,
    plan_build,
    tensorrt_major,
)

#: Builder flags TensorRT 11 removed (NVIDIA's 10.x -> 11.x Python migration guide).
REMOVED_IN_11 = {
    "FP16", "INT8", "FP8", "BF16", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO",
}
VERSIONS = ["10.0.1.6", "10.3.0.26", "10.16.1.11", "11.0.0.114", "11.4.0.106"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("onnx_precision", "precision"), [("fp32", "fp16"), ("fp16", "fp16"), ("fp32", "fp32")])
def test_plan_per_version(version: str, onnx_precision: str, precision: str) -> None:
    plan = plan_build(version, precision, onnx_precision=onnx_precision)
    major = int(version.split(".")[0])
    assert plan.tensorrt_major == major and plan.precision == precision
    half_network = onnx_precision == "fp16" or plan.convert_to_fp16
    if major == 11:
        assert not REMOVED_IN_11 & set(plan.builder_flags)  # weak typing is gone
        assert plan.network_flags == ()  # STRONGLY_TYPED is deprecated and ignored: always on
        assert half_network == (precision == "fp16")  # FP16 comes from the tensors' types
        assert plan.convert_to_fp16 == (precision == "fp16" and onnx_precision == "fp32")
    else:
        assert not plan.convert_to_fp16  # the existing FP16-flag path
        assert ("FP16" in plan.builder_flags) == (precision == "fp16" and onnx_precision == "fp32")
        assert ("STRONGLY_TYPED" in plan.network_flags) == (onnx_precision == "fp16")
    assert "INT8" not in plan.builder_flags and "VERSION_COMPATIBLE" not in plan.builder_flags


@pytest.mark.parametrize("version", ["10.3.0.26", "11.4.0.106"])
@pytest.mark.parametrize("hardware", HARDWARE_COMPATIBILITY)
@pytest.mark.parametrize("version_compatible", [False, True])
def test_plan_compatibility_options(version: str, hardware: str, version_compatible: bool) -> None:
    plan = plan_build(version, hardware_compatibility=hardware, version_compatible=version_compatible,
                      compute_capability=(9, 0))
    assert plan.hardware_compatibility == hardware and plan.version_compatible == version_compatible
    assert ("VERSION_COMPATIBLE" in plan.builder_flags) == version_compatible
    assert ("builder VERSION_COMPATIBLE" in plan.describe()) == version_compatible


def test_plan_descriptions_tell_the_recipes_apart() -> None:
    recipes = {
        plan_build(v, p, onnx_precision=o).describe()
        for v in ("10.3.0", "11.4.0") for p, o in (("fp16", "fp32"), ("fp16", "fp16"), ("fp32", "fp32"))
    }
    assert len(recipes) == 6


@pytest.mark.parametrize(("version", "major"), [("10.3.0.26", 10), ("11.4.0.106", 11), ("11", 11), (" 10.0.0b6", 10)])
def test_tensorrt_major(version: str, major: int) -> None:
    assert tensorrt_major(version) == major


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("12.0.0",), {}, ValueError, r"TensorRT 12\.0\.0 is not supported: steelfast builds engines with TensorRT 10\.x and 11\.x"),
        (("8.6.1",), {}, ValueError, r"TensorRT 8\.6\.1 is not supported"),
        (("trt",), {}, ValueError, "not a TensorRT version: 'trt'"),
        (("11.4.0", "int8"), {}, ValueError, "precision must be one of 'fp16', 'fp32', got 'int8'"),
        (("11.4.0", "fp32"), {"onnx_precision": "fp16"}, ValueError, "a float16 ONNX file builds only an fp16 engine"),
        (("11.4.0",), {"onnx_precision": "bf16"}, ValueError, "onnx_precision must be one of 'fp32', 'fp16', got 'bf16'"),
        (("11.4.0",), {"hardware_compatibility": "all"}, ValueError,
         "hardware_compatibility must be one of 'none', 'ampere_plus', 'same_compute_capability', got 'all'"),
        (("10.3.0",), {"hardware_compatibility": "ampere_plus", "compute_capability": (7, 5)}, ValueError,
         r"needs an Ampere or newer GPU \(8\.0\+\) to build on, got 7\.5"),
        (("11.4.0",), {"version_compatible": 1}, TypeError, "version_compatible must be True or False, got int: 1"),
    ],
)
def test_plan_rejects_bad_arguments(args: tuple, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        plan_build(*args, **kwargs)


# ---- the message when TensorRT is missing or cannot build ---------------------------------------

INSTALL = r"pip install 'steelfast\[tensorrt\]' \(or: pip install tensorrt --extra-index-url https://pypi\.nvidia\.com\)"
LIBS = r"tensorrt-cu12-libs / tensorrt-cu13-libs parts download from NVIDIA's index"
LEAN_NAMES = ("tensorrt_lean", "tensorrt_lean_bindings", "tensorrt_dispatch", "tensorrt_dispatch_bindings")


def _stand_in(name: str, **attrs: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Neither tensorrt nor a lean/dispatch runtime imports."""
    for name in ("tensorrt", *LEAN_NAMES):
        monkeypatch.setitem(sys.modules, name, None)
    return monkeypatch


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("missing", f"^the tensorrt package is missing or incomplete: {INSTALL}; its {LIBS}"),
        ("lean runtime only", (r"^only a TensorRT runtime without the builder \(tensorrt_lean\) is installed: it runs "
                               f"version-compatible engines but cannot build them; install the full TensorRT: {INSTALL}")),
        ("no Builder", f"^the installed tensorrt 11.4.0.106 has no Builder .*cannot build engines; .*{INSTALL}; its {LIBS}"),
    ],
)
def test_message_says_what_to_install(no_tensorrt: pytest.MonkeyPatch, case: str, match: str) -> None:
    if case == "lean runtime only":
        no_tensorrt.setitem(sys.modules, "tensorrt_lean", _stand_in("tensorrt_lean", Runtime=object))
    if case == "no Builder":
        no_tensorrt.setitem(sys.modules, "tensorrt", _stand_in("tensorrt", __version__="11.4.0.106", Runtime=object))
    with pytest.raises(ImportError, match=match) as info:
        import_tensorrt(builder=True)
    assert "\n" not in str(info.value)


def test_runtime_without_builder_is_enough_to_run(no_tensorrt: pytest.MonkeyPatch) -> None:
    stand_in = _stand_in("tensorrt", __version__="11.4.0.106", Runtime=object)
    no_tensorrt.setitem(sys.modules, "tensorrt", stand_in)
    assert import_tensorrt(builder=False) is stand_in


def test_cli_export_prints_the_message_in_one_line(no_tensorrt: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from steelfast.checkpoint import save_checkpoint
    from steelfast.models import UNet

    pytest.importorskip("onnx", reason="the export writes ONNX first")
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", UNet(widths=(4, 4, 4, 4, 4), bottleneck=8, decoder_widths=(4, 4, 4, 4, 4)))
    result = CliRunner().invoke(cli.app, ["export", str(ckpt), "--onnx", str(tmp_path / "m.onnx"), "--tensorrt"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0] == f"wrote {tmp_path / 'm.onnx'}"
    assert len(lines) == 2 and lines[1].startswith("error: the tensorrt package is missing or incomplete: pip install")
    assert "https://pypi.nvidia.com" in lines[1] and "Traceback" not in result.output


def test_make_backend_refuses_a_tensorrt_without_builder(no_tensorrt: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from steelfast.checkpoint import save_checkpoint
    from steelfast.inference.backends import make_backend
    from steelfast.models import UNet

    no_tensorrt.setitem(sys.modules, "tensorrt", _stand_in("tensorrt", __version__="10.3.0", Runtime=object))
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", UNet(widths=(4, 4, 4, 4, 4), bottleneck=8, decoder_widths=(4, 4, 4, 4, 4)))
    with pytest.raises(ImportError, match=f"tensorrt 10.3.0 has no Builder .*{INSTALL}"):
        make_backend(ckpt, "tensorrt")
