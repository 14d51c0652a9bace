"""Tests for steelfast.models: architecture size, cost, shapes and input checks."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from steelfast.models import UNet, build_model, count_parameters, inference_graph


def _conv_macs(cin: int, cout: int, k: int, h: int, w: int) -> int:
    return cin * cout * k * k * h * w


def _analytic(
    widths=(8, 16, 32, 64, 64), dec=(64, 32, 32, 16, 8), bott=128, cin=3, ncls=4, h=256, w=1600
):
    """(parameters, MACs) counted by hand, level by level."""
    params = macs = 0
    skips = []
    c = cin
    for width in widths:
        params += (c * 9 + 1) * width + (width * 9 + 1) * width
        macs += _conv_macs(c, width, 3, h, w) + _conv_macs(width, width, 3, h, w)
        skips.append((width, h, w))
        c, h, w = width, h // 2, w // 2
    params += (c * 9 + 1) * bott + (bott * 9 + 1) * bott
    macs += _conv_macs(c, bott, 3, h, w) + _conv_macs(bott, bott, 3, h, w)
    c = bott
    for d, (s, sh, sw) in zip(dec, reversed(skips)):
        params += (c * 4 + 1) * d  # 2x2 transposed conv
        macs += c * d * sh * sw  # stride 2, kernel 2: one tap per output pixel and input channel
        params += ((d + s) * 9 + 1) * d + (d * 9 + 1) * d
        macs += _conv_macs(d + s, d, 3, sh, sw) + _conv_macs(d, d, 3, sh, sw)
        c = d
    params += (c + 1) * ncls
    macs += _conv_macs(c, ncls, 1, sh, sw)
    return params, macs


def test_parameter_count_matches_hand_count_and_is_about_0_6_million() -> None:
    model = UNet()
    params, _ = _analytic()
    assert count_parameters(model) == params == 600_756


def test_flops_are_8_6_gflop_per_image_counting_a_mac_as_two() -> None:
    model = UNet().eval()
    _, macs = _analytic()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 256, 1600))
    flops = counter.get_total_flops()
    assert flops == 2 * macs
    assert 8.55e9 < flops < 8.65e9


@pytest.mark.parametrize("shape", [(2, 3, 32, 64), (1, 3, 64, 32), (3, 3, 32, 32)])
def test_output_is_logits_of_input_size(shape: tuple[int, int, int, int]) -> None:
    torch.manual_seed(0)
    out = UNet()(torch.randn(shape))
    assert out.shape == (shape[0], 4, shape[2], shape[3])
    assert out.dtype == torch.float32
    assert (out < 0).any() and (out > 0).any()  # logits, not probabilities


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 3, 250, 1600), "pad to 256×1600 or crop to 224×1600"),
        ((1, 3, 256, 1590), "pad to 256×1600 or crop to 256×1568"),
        ((1, 3, 16, 40), "pad to 32×64"),
        ((1, 1, 32, 32), "built for 3 input channels"),
        ((3, 32, 32), "4-D tensor"),
    ],
)
def test_bad_input_sizes_name_the_fix(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UNet()(torch.zeros(shape))


def test_shape_check_is_skipped_while_exporting() -> None:
    # With the Python-side size check active, torch.export would specialise H and W to the
    # example's size; skipped, the exported graph keeps them dynamic.
    model = UNet(widths=(4, 4), decoder_widths=(4, 4), bottleneck=8).eval()
    n = torch.export.Dim("n", min=1, max=64)
    hb = torch.export.Dim("hb", min=1, max=64)
    wb = torch.export.Dim("wb", min=1, max=64)
    program = torch.export.export(
        model, (torch.zeros(2, 3, 32, 64),), dynamic_shapes={"x": {0: n, 2: 4 * hb, 3: 4 * wb}}
    )
    x = torch.randn(3, 3, 64, 128)
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"activation": "tanhh"}, ValueError, "activation must be one of"),
        ({"widths": (8, 0)}, ValueError, r"widths must hold positive ints, got \(8, 0\)"),
        ({"widths": "abc"}, TypeError, "widths must be a sequence"),
        (
            {"widths": (8, 16), "decoder_widths": (8,)},
            ValueError,
            "decoder_widths must have 2 entries",
        ),
        ({"classes": 0}, ValueError, "classes must be a positive int, got 0"),
        ({"in_channels": 2.5}, TypeError, "in_channels must be a positive int, got float: 2.5"),
        ({"in_channels": True}, TypeError, "in_channels must be a positive int, got bool: True"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        UNet(**kwargs)


@pytest.mark.parametrize("activation", ["elu", "relu", "silu"])
def test_build_model_round_trips_config(activation: str) -> None:
    model = UNet(
        in_channels=1, widths=(4, 8), decoder_widths=(8, 4), bottleneck=16, activation=activation
    )
    clone = build_model(model.config)
    assert clone.config == model.config
    assert count_parameters(clone) == count_parameters(model)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "fpn"}, "unknown architecture 'fpn'"),
        ({"name": "unet", "depth": 3}, "unknown UNet config keys"),
    ],
)
def test_build_model_rejects_unknown(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(config)


@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning")
def test_onnx_export_with_dynamic_batch(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = UNet(widths=(4, 4), decoder_widths=(4, 4), bottleneck=8).eval()
    path = tmp_path / "m.onnx"
    n = torch.export.Dim("n", min=1, max=64)
    torch.onnx.export(
        model,
        (torch.randn(2, 3, 32, 64),),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: n}},
        dynamo=True,
        verbose=False,
    )
    onnx.checker.check_model(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x3 = torch.randn(3, 3, 32, 64)
    (out,) = sess.run(None, {"x": x3.numpy()})
    with torch.no_grad():
        ref = model(x3).numpy()
    assert out.shape == (3, 4, 32, 64)
    assert abs(out - ref).max() < 1e-4


@pytest.mark.parametrize("activation", ["elu", "relu"])
@pytest.mark.parametrize("shape", [(2, 3, 64, 96), (1, 3, 32, 32)])
def test_inference_graph_computes_the_same_logits(activation: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = UNet(activation=activation).eval()
    for p in model.parameters():  # larger weights than Glorot's: activations reach ELU's negative tail
        p.data.mul_(3.0)
    fast = inference_graph(model)
    x = torch.randn(shape)
    with torch.no_grad():
        ref, out = model(x), fast(x)
    assert out.shape == ref.shape
    scale = float(ref.abs().max())
    torch.testing.assert_close(out, ref, atol=1e-5 * max(scale, 1.0), rtol=1e-5)
    assert not any(isinstance(m, torch.nn.ELU) for m in fast.modules())
    assert any(isinstance(m, torch.nn.ELU) for m in model.modules()) == (activation == "elu")  # the original is untouched


def test_inference_graph_rejects_other_modules() -> None:
    with pytest.raises(TypeError, match="expects a steelfast UNet, got Conv2d"):
        inference_graph(torch.nn.Conv2d(3, 4, 3))
