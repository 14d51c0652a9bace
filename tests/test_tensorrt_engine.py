"""The TensorRT engine cache (key, file names, stale engines, sidecar: pure Python) and, where
``tensorrt`` imports and a CUDA device exists, real engines built and run with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from steelfast.inference.backends.tensorrt_engine import (
    EngineKey,
    _engine_paths,
    _remove_stale,
    engine_cache_key,
    read_sidecar,
)
from steelfast.inference.export import export_onnx
from steelfast.inference.onnx_file import read_onnx_metadata
from steelfast.models import UNet


def tiny_unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(widths=(4, 4, 4, 4, 4), bottleneck=8, decoder_widths=(4, 4, 4, 4, 4)).eval()


# ---- TensorRT engine cache key (pure Python) ---------------------------------------------------

def _key(tmp_path: Path, **overrides: object) -> EngineKey:
    onnx_file = tmp_path / "m.onnx"
    if not onnx_file.exists():
        onnx_file.write_bytes(b"onnx bytes")
    args = {"tensorrt_version": "10.3.0", "gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0), "precision": "fp16"}
    args.update(overrides)
    return engine_cache_key(onnx_file, **args)  # type: ignore[arg-type]


def test_cache_key_is_stable(tmp_path: Path) -> None:
    a, b = _key(tmp_path), _key(tmp_path)
    assert a == b and a.digest() == b.digest()
    assert a.compute_capability == "9.0"
    assert a.as_dict()["shapes"] == [[1, 8, 32], 3, 256, 1600]


@pytest.mark.parametrize(
    "change",
    [
        {"tensorrt_version": "10.4.0"},
        {"gpu_name": "NVIDIA A100-SXM4-40GB"},
        {"compute_capability": "8.0"},
        {"precision": "fp32"},
        {"batch": (1, 4, 16)},
        {"height": 128},
        {"hardware_compatibility": "ampere_plus"},
        {"hardware_compatibility": "same_compute_capability"},
        {"version_compatible": True},
        {"build": "TensorRT 11 fp16: float16 copy of the ONNX file, strongly typed (onnxconverter-common 1.16.0)"},
    ],
)
def test_cache_key_changes_with_each_field(tmp_path: Path, change: dict) -> None:
    base, other = _key(tmp_path), _key(tmp_path, **change)
    assert base.digest() != other.digest()
    assert _engine_paths(tmp_path, base)[0] != _engine_paths(tmp_path, other)[0]


def test_cache_key_changes_with_the_onnx_file(tmp_path: Path) -> None:
    before = _key(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"other onnx bytes")
    assert _key(tmp_path).onnx_sha256 != before.onnx_sha256


def test_engine_file_names_carry_version_and_gpu(tmp_path: Path) -> None:
    engine, sidecar, timing = _engine_paths(tmp_path, _key(tmp_path))
    assert "trt10.3.0" in engine.name and "nvidia-h100-80gb-hbm3-sm9.0" in engine.name
    assert sidecar.suffix == ".json" and timing.name == "timing-nvidia-h100-80gb-hbm3-sm9.0-trt10.3.0.cache"


def test_new_tensorrt_version_removes_stale_engines(tmp_path: Path) -> None:
    old, new = _key(tmp_path, tensorrt_version="10.0.1"), _key(tmp_path)
    old_engine, old_side, _ = _engine_paths(tmp_path, old)
    new_engine, new_side, _ = _engine_paths(tmp_path, new)
    for p in (old_engine, new_engine):
        p.write_bytes(b"engine")
    old_side.write_text(json.dumps(old.as_dict()))
    new_side.write_text(json.dumps(new.as_dict()))
    _remove_stale(tmp_path, new, new_engine)
    assert not old_engine.exists() and not old_side.exists()
    assert new_engine.exists() and new_side.exists()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"precision": "int8"}, "precision must be one of 'fp16', 'fp32', got 'int8'"),
        ({"hardware_compatibility": "turing_plus"}, "hardware_compatibility must be one of 'none', 'ampere_plus'"),
        ({"batch": (4, 2, 8)}, r"1 <= min <= opt <= max, got \(4, 2, 8\)"),
        ({"width": 1000}, "multiples of 32, got 256x1000"),
        ({"gpu_name": ""}, "gpu_name must be a non-empty string"),
    ],
)
def test_cache_key_rejects_bad_arguments(tmp_path: Path, change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _key(tmp_path, **change)


def test_cache_key_defaults_and_sidecar_fields(tmp_path: Path) -> None:
    key = _key(tmp_path, hardware_compatibility="ampere_plus", version_compatible=True, build="recipe")
    fields = key.as_dict()
    assert (fields["hardware_compatibility"], fields["version_compatible"], fields["build"]) == ("ampere_plus", True, "recipe")
    plain = _key(tmp_path).as_dict()
    assert (plain["hardware_compatibility"], plain["version_compatible"]) == ("none", False)
    assert set(fields) == {f for f in EngineKey.__dataclass_fields__}


def test_cache_key_rejects_a_non_bool_version_compatible(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="version_compatible must be True or False, got str: 'yes'"):
        _key(tmp_path, version_compatible="yes")


def test_read_sidecar(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    assert read_sidecar(engine) == {}
    engine.with_suffix(".json").write_text(json.dumps(_key(tmp_path, version_compatible=True).as_dict()))
    assert read_sidecar(engine)["version_compatible"] is True
    engine.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"m\.json must hold a JSON object, got list"):
        read_sidecar(engine)
    engine.with_suffix(".json").write_text("{nope")
    with pytest.raises(ValueError, match=r"m\.json is not valid JSON"):
        read_sidecar(engine)


# ---- real engines (only where tensorrt imports with its builder and a GPU exists) --------------

@pytest.fixture(scope="module")
def trt():
    """The tensorrt module; skips where it does not import, cannot build, or there is no GPU."""
    module = pytest.importorskip("tensorrt", reason="the tensorrt package is not installed (an NVIDIA GPU machine needs it)")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA device; none is available")
    if not hasattr(module, "Builder"):
        pytest.skip(f"tensorrt {module.__version__} has no Builder (a lean or dispatch runtime)")
    return module


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[UNet, Path, Path]:
    pytest.importorskip("onnx", reason="engines are built from ONNX files")
    folder = tmp_path_factory.mktemp("trt")
    model = tiny_unet()
    fp32 = export_onnx(model, folder / "tiny.onnx")
    fp16 = export_onnx(model, folder / "tiny-fp16.onnx", precision="fp16")
    return model, fp32, fp16


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.parametrize("source", ["fp32", "fp16"])
@pytest.mark.parametrize(("hardware", "version_compatible"), [("none", False), ("ampere_plus", False), ("none", True)])
def test_engine_builds_caches_and_matches_torch(
    trt, onnx_files: tuple[UNet, Path, Path], tmp_path: Path, source: str, hardware: str, version_compatible: bool,
) -> None:
    from steelfast.inference.backends.tensorrt_backend import TensorRTBackend
    from steelfast.inference.backends.tensorrt_engine import build_tensorrt_engine
    from steelfast.inference.backends.tensorrt_plan import tensorrt_major

    if hardware == "ampere_plus" and torch.cuda.get_device_capability(0)[0] < 8:
        pytest.skip("ampere_plus engines are built on Ampere or newer GPUs")
    model, fp32, fp16 = onnx_files
    onnx_path = fp32 if source == "fp32" else fp16
    options = {"cache_dir": tmp_path, "batch": (1, 2, 4), "height": 64, "width": 128,
               "hardware_compatibility": hardware, "version_compatible": version_compatible}
    engine = build_tensorrt_engine(onnx_path, **options)
    stamp = engine.stat().st_mtime_ns
    assert build_tensorrt_engine(onnx_path, **options) == engine and engine.stat().st_mtime_ns == stamp  # cache hit
    recorded = read_sidecar(engine)
    assert recorded["tensorrt_version"] == trt.__version__ and recorded["precision"] == "fp16"
    assert (recorded["hardware_compatibility"], recorded["version_compatible"]) == (hardware, version_compatible)
    assert recorded["build"].startswith(f"TensorRT {tensorrt_major(trt.__version__)} fp16:")
    backend = TensorRTBackend(engine, read_onnx_metadata(onnx_path))
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 128)).astype(np.float32)
    got = backend.predict_proba(x)
    assert backend.io_dtypes["image"] == torch.float32  # the input contract: float32, read by name
    with torch.no_grad():
        want = torch.sigmoid(model(torch.from_numpy(x))).numpy()
    diff = np.abs(got.astype(np.float32) - want)
    assert diff.mean() <= 1e-3 and diff.max() <= 2e-2  # FP16 engine
