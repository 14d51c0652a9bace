"""Backends: parity between the ones that run here, input checks, the auto rule, compile fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from steelfast.checkpoint import default_metadata, save_checkpoint
from steelfast.inference.backends import available_backends, make_backend, resolve_backend
from steelfast.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from steelfast.inference.backends.torch_backend import TorchBackend
from steelfast.inference.export import export_onnx
from steelfast.models import UNet

# Stated tolerances on probabilities (absolute): float32 backends differ only in summation
# order; bfloat16 keeps 8 mantissa bits, which moves a probability by up to ~1e-2 on these tiny
# random models.
FP32_ATOL = 1e-5
BF16_ATOL = 3e-2
FP16_ATOL = 2e-2


def tiny_unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(widths=(4, 4, 4, 4, 4), bottleneck=8, decoder_widths=(4, 4, 4, 4, 4)).eval()


def reference(model: UNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(x))).numpy()


@pytest.fixture(scope="module")
def model() -> UNet:
    return tiny_unet()


@pytest.fixture(scope="module")
def onnx_file(model: UNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def batch(n: int = 2, h: int = 64, w: int = 128, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, h, w)).astype(np.float32)


def test_auto_rule_here() -> None:
    names = available_backends()
    assert "torch" in names
    want = "tensorrt" if "tensorrt" in names else "torch"
    assert resolve_backend("auto") == want
    assert resolve_backend("onnxruntime") == "onnxruntime"


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown backend 'openvino'"):
        resolve_backend("openvino")


@pytest.mark.parametrize(("precision", "atol"), [("fp32", FP32_ATOL), ("bf16", BF16_ATOL)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_torch_cpu_matches_eager_fp32(model: UNet, precision: str, atol: float, channels_last: bool) -> None:
    backend = TorchBackend(model, default_metadata(model), device="cpu", precision=precision,
                           channels_last=channels_last, compile=False)
    x = batch(3)
    got = backend.predict_proba(x)
    assert got.shape == (3, 4, 64, 128) and got.dtype in (np.float32, np.float16)
    np.testing.assert_allclose(got.astype(np.float32), reference(model, x), atol=atol, rtol=0)


def test_torch_backend_leaves_the_callers_model_alone(model: UNet) -> None:
    TorchBackend(model, default_metadata(model), device="cpu", precision="bf16", compile=False)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_onnxruntime_matches_torch(model: UNet, onnx_file: Path) -> None:
    ort_backend = make_backend(onnx_file, "onnxruntime")
    assert isinstance(ort_backend, OnnxRuntimeBackend)
    torch_backend = TorchBackend(model, default_metadata(model), device="cpu", precision="fp32", compile=False)
    for shape in [(1, 64, 128), (4, 96, 64)]:
        x = batch(*shape)
        np.testing.assert_allclose(ort_backend.predict_proba(x), torch_backend.predict_proba(x), atol=FP32_ATOL, rtol=0)


def test_make_backend_from_checkpoint(model: UNet, tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model, {"postprocess": {"thresholds": [0.1, 0.2, 0.3, 0.4]}})
    backend = make_backend(ckpt, "torch", compile=False)
    assert backend.metadata["postprocess"]["thresholds"] == [0.1, 0.2, 0.3, 0.4]
    ort_backend = make_backend(ckpt, "onnxruntime", cache_dir=tmp_path)
    x = batch(2)
    np.testing.assert_allclose(ort_backend.predict_proba(x), reference(model, x), atol=FP32_ATOL, rtol=0)
    assert ort_backend.metadata["postprocess"]["thresholds"] == [0.1, 0.2, 0.3, 0.4]


def test_compile_failure_falls_back_with_a_warning(model: UNet, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def broken_compile(module: object, **kwargs: object) -> object:
        def run(x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    backend = TorchBackend(model, default_metadata(model), device="cpu", precision="fp32", compile=True)
    x = batch(2)
    with caplog.at_level(logging.WARNING, logger="steelfast.inference.backends.torch_backend"):
        got = backend.predict_proba(x)
    assert "torch.compile failed (RuntimeError: no C++ compiler)" in caplog.text
    assert backend.compiled is False
    np.testing.assert_allclose(got, reference(model, x), atol=FP32_ATOL, rtol=0)


@pytest.mark.slow
def test_compiled_torch_matches_eager_and_pads_short_batches(model: UNet) -> None:
    backend = TorchBackend(model, default_metadata(model), device="cpu", precision="fp32", compile=True)
    x = batch(3)
    np.testing.assert_allclose(backend.predict_proba(x), reference(model, x), atol=1e-4, rtol=0)
    assert backend.compiled
    short = backend.predict_proba(x[:2])  # padded to the compiled batch of 3, not recompiled
    assert short.shape == (2, 4, 64, 128)
    np.testing.assert_allclose(short, reference(model, x[:2]), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (np.zeros((1, 3, 64, 128), np.float64), TypeError, "float32 input, got dtype float64"),
        (np.zeros((3, 64, 128), np.float32), ValueError, r"shape \(N, C, H, W\), got \(3, 64, 128\)"),
        (np.zeros((1, 1, 64, 128), np.float32), ValueError, r"3 input channels, got shape \(1, 1, 64, 128\)"),
        (np.zeros((1, 3, 60, 128), np.float32), ValueError, r"multiples of 32 .* got shape \(1, 3, 60, 128\)"),
        ([[1.0]], TypeError, "numpy array .* got list"),
    ],
)
def test_predict_proba_checks_its_input(model: UNet, x: object, error: type, match: str) -> None:
    backend = TorchBackend(model, default_metadata(model), device="cpu", compile=False)
    with pytest.raises(error, match=match):
        backend.predict_proba(x)


def test_empty_batch(model: UNet) -> None:
    backend = TorchBackend(model, default_metadata(model), device="cpu", compile=False)
    out = backend.predict_proba(np.zeros((0, 3, 64, 128), np.float32))
    assert out.shape == (0, 4, 64, 128)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"precision": "int8"}, "precision must be one of .* got 'int8'"),
     ({"device": "tpu"}, "device must be 'cpu' or 'cuda', got 'tpu'"),
     ({"compile": "yes"}, "compile must be True, False or 'auto', got 'yes'")],
)
def test_torch_backend_rejects_bad_options(model: UNet, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TorchBackend(model, default_metadata(model), **kwargs)


def test_make_backend_rejects_bad_sources(onnx_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="torch backend needs a checkpoint, got an ONNX file"):
        make_backend(onnx_file, "torch")
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        make_backend(tmp_path / "nothing.safetensors", "torch")
    with pytest.raises(TypeError, match="checkpoint path or a torch module, got int"):
        make_backend(42, "torch")


@pytest.mark.gpu
def test_torch_cuda_fp16_matches_cpu(model: UNet) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    backend = TorchBackend(model, default_metadata(model), device="cuda", compile=False)
    assert backend.precision == "fp16"
    x = batch(4)
    np.testing.assert_allclose(backend.predict_proba(x).astype(np.float32), reference(model, x), atol=FP16_ATOL, rtol=0)


@pytest.mark.parametrize(
    ("available", "model", "expected"),
    [
        (["torch", "onnxruntime"], "m.onnx", "onnxruntime"),
        (["tensorrt", "torch", "onnxruntime"], "m.onnx", "tensorrt"),
        (["torch", "onnxruntime"], "m.safetensors", "torch"),
        (["torch", "onnxruntime"], None, "torch"),
    ],
)
def test_auto_backend_runs_an_onnx_file(monkeypatch: pytest.MonkeyPatch, available: list, model, expected: str) -> None:
    monkeypatch.setattr("steelfast.inference.backends.available_backends", lambda: list(available))
    assert resolve_backend("auto", model) == expected


def test_auto_backend_without_an_onnx_runtime_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("steelfast.inference.backends.available_backends", lambda: ["torch"])
    with pytest.raises(ImportError, match=r"running the ONNX file 'm.onnx' needs onnxruntime: pip install 'steelfast\[onnx\]'"):
        resolve_backend("auto", "m.onnx")
