"""The float16 ONNX model (what TensorRT 11 builds FP16 engines from): structure, parity with the
float32 model on the bundled models, and input errors. Runs without TensorRT or a GPU.

Parity: ONNX Runtime's CPU provider runs the float16 model (it casts around the operators it has
no float16 kernel for, so activations are rounded to float16 between operators); ONNX's reference
evaluator runs it with float16 arithmetic in NumPy on a small input. The tolerance, per image, is
the README's: mean |p16 - p32| <= 1e-3, a share of mask pixels flipped at threshold 0.5 <= 1e-3,
and the same gate decisions. Measured by ``bench/fp16_parity.py`` over 100 real and 20 synthetic
images, the worst image of the bundled models (and of the default one with its gate off) stays
below 2.7e-4 on both counts, with no gate decision changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import shared_data_dir
from typer.testing import CliRunner

from steelfast import cli
from steelfast.checkpoint import load_checkpoint, save_checkpoint
from steelfast.data.synth import synth_image
from steelfast.images import read_gray, to_model_input
from steelfast.inference.export import export_onnx
from steelfast.inference.onnx_file import read_onnx_metadata
from steelfast.model_files import bundled_checkpoint_path
from steelfast.models import UNet

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed for the FP16 parity tests")
onnx = pytest.importorskip("onnx", reason="onnx is needed for the FP16 tests")
pytest.importorskip("onnxconverter_common", reason="onnxconverter-common is needed for the FP16 conversion")

from onnx import TensorProto, numpy_helper

from steelfast.inference.onnx_fp16 import convert_to_fp16, onnx_precision, to_fp16_onnx

#: Per-image tolerance of the float16 model against the float32 model (README, TensorRT section).
MEAN_ABS_TOL = 1e-3
FLIP_TOL = 1e-3
THRESHOLD = 0.5


def tiny_unet(seed: int = 0) -> UNet:
    import torch

    torch.manual_seed(seed)
    return UNet(widths=(4, 4, 4, 4, 4), bottleneck=8, decoder_widths=(4, 4, 4, 4, 4)).eval()


def _gate_off(dst: Path) -> Path:
    """The bundled default model exported with its gate thresholds set to 0: every class map is kept."""
    model, meta = load_checkpoint(bundled_checkpoint_path("default"))
    model.set_gate_thresholds([0.0] * len(meta["classes"]))
    return export_onnx(model, dst, metadata=meta)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """name -> (float32 ONNX, float16 ONNX) for the bundled models and the ungated default."""
    folder = tmp_path_factory.mktemp("fp16")
    fp32 = {name: export_onnx(bundled_checkpoint_path(name), folder / f"{name}.onnx") for name in ("default", "synthetic-unet")}
    fp32["default-gate-off"] = _gate_off(folder / "default-gate-off.onnx")
    return {name: (path, to_fp16_onnx(path, folder / f"{name}.fp16.onnx")) for name, path in fp32.items()}


def _sessions(pair: tuple[Path, Path]) -> list:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in pair]


def _inputs(path: Path, grays: list[np.ndarray]) -> list[np.ndarray]:
    meta = read_onnx_metadata(path)
    norm = meta["normalization"]
    return [to_model_input(g[None], norm["mean"], norm["std"], int(meta["input"]["channels"])) for g in grays]


def _check_parity(p32: np.ndarray, p16: np.ndarray) -> None:
    assert p32.dtype == np.float32 and p16.dtype == np.float16 and p16.shape == p32.shape
    diff = np.abs(p16.astype(np.float32) - p32)
    flipped = ((p32 > THRESHOLD) != (p16 > THRESHOLD)).mean()
    assert diff.mean() <= MEAN_ABS_TOL, f"mean |dp| {diff.mean():.2e} > {MEAN_ABS_TOL}"
    assert flipped <= FLIP_TOL, f"flipped mask pixels {flipped:.2e} > {FLIP_TOL}"
    gated32, gated16 = ~p32.any(axis=(-2, -1)), ~p16.any(axis=(-2, -1))
    np.testing.assert_array_equal(gated16, gated32)  # the same class maps switched off


def _run_pairs(pair: tuple[Path, Path], xs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    s32, s16 = _sessions(pair)
    return [(s32.run(None, {"image": x})[0], s16.run(None, {"image": x})[0]) for x in xs]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default", "synthetic-unet"])
def test_fp16_matches_fp32_on_real_images(models: dict, name: str) -> None:
    folder = shared_data_dir() / "images"
    files = sorted(folder.glob("*.jpg"))[:6] if folder.is_dir() else []
    if not files:
        pytest.skip(f"real Severstal images not found in {folder}")
    pairs = _run_pairs(models[name], _inputs(models[name][0], [read_gray(f) for f in files]))
    for p32, p16 in pairs:
        _check_parity(p32, p16)
    assert any((p32 > THRESHOLD).any() for p32, _ in pairs)  # the sample holds predicted defects


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default-gate-off", "synthetic-unet"])
def test_fp16_matches_fp32_on_synthetic_images(models: dict, name: str) -> None:
    rng = np.random.default_rng(7)
    grays = [synth_image(rng, classes=classes)[0] for classes in [(1, 3), (2,), (4,)]]
    pairs = _run_pairs(models[name], _inputs(models[name][0], grays))
    for p32, p16 in pairs:
        _check_parity(p32, p16)
    assert any(((p32 > 0.05) & (p32 < 0.95)).any() for p32, _ in pairs)  # not only saturated outputs


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default-gate-off", "synthetic-unet"])
def test_reference_evaluator_runs_fp16_arithmetic(models: dict, name: str) -> None:
    from onnx.reference import ReferenceEvaluator

    gray = synth_image(np.random.default_rng(3), classes=(1, 3))[0][:, :256]
    (x,) = _inputs(models[name][0], [np.ascontiguousarray(gray)])
    (p32,) = _sessions(models[name])[0].run(None, {"image": x})
    with np.errstate(over="ignore"):  # the float16 sigmoid's exp overflows to inf, giving exactly 0
        (p16,) = ReferenceEvaluator(str(models[name][1])).run(None, {"image": x})
    _check_parity(p32, p16)


def test_fp16_model_structure(models: dict) -> None:
    fp32_path, fp16_path = models["default"]
    fp32, fp16 = onnx.load(str(fp32_path)), onnx.load(str(fp16_path))
    assert (onnx_precision(fp32_path), onnx_precision(fp16)) == ("fp32", "fp16")
    assert fp16.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert fp16.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert read_onnx_metadata(fp16_path) == read_onnx_metadata(fp32_path)
    assert fp16_path.stat().st_size < 0.6 * fp32_path.stat().st_size
    exact = {t.name: numpy_helper.to_array(t) for t in fp32.graph.initializer}
    weights = {t.name: t for t in fp16.graph.initializer}
    convs = [n for n in fp16.graph.node if n.op_type == "Conv"]
    assert convs and all(weights[n.input[1]].data_type == TensorProto.FLOAT16 for n in convs)
    # The gate compares float32 probabilities with the exact float32 thresholds.
    (compare,) = [n for n in fp16.graph.node if n.op_type == "GreaterOrEqual"]
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(fp16).graph.value_info}
    assert types[compare.input[0]] == TensorProto.FLOAT
    threshold = weights[compare.input[1]]
    assert threshold.data_type == TensorProto.FLOAT
    np.testing.assert_array_equal(numpy_helper.to_array(threshold), exact[compare.input[1]])
    # Resize runs in float16 with its scales float32, as the standard requires.
    resizes = [n for n in fp16.graph.node if n.op_type == "Resize"]
    assert resizes and all(types[n.input[0]] == TensorProto.FLOAT16 for n in resizes)
    scales = [n.input[2] for n in resizes if len(n.input) > 2 and n.input[2]]  # the others give sizes
    assert scales and all(weights[name].data_type == TensorProto.FLOAT for name in scales)
    for name in scales:
        np.testing.assert_array_equal(numpy_helper.to_array(weights[name]), exact[name])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny checkpoint and its float32 ONNX file."""
    folder = tmp_path_factory.mktemp("tiny")
    ckpt = save_checkpoint(folder / "tiny.safetensors", tiny_unet())
    return ckpt, export_onnx(ckpt, folder / "tiny.onnx")


def test_export_precision_fp16_is_the_converted_file(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, fp32 = tiny
    direct = export_onnx(ckpt, tmp_path / "direct.onnx", precision="fp16")
    converted = to_fp16_onnx(fp32, tmp_path / "converted.onnx")
    assert onnx_precision(direct) == "fp16"
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 128)).astype(np.float32)
    (a,), (b,) = (_sessions((p, p))[0].run(None, {"image": x}) for p in (direct, converted))
    np.testing.assert_array_equal(a, b)


def test_cli_export_fp16(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["export", str(tiny[0]), "--onnx", str(tmp_path / "m.onnx"), "--precision", "fp16"])
    assert result.exit_code == 0, result.output
    assert onnx_precision(tmp_path / "m.onnx") == "fp16"


def _no_metadata(path: Path) -> Path:
    from onnx import helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    onnx.save_model(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])), str(path))
    return path


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("bad suffix", ValueError, r"ONNX output must end with \.onnx, got '.*out\.txt'"),
        ("missing source", FileNotFoundError, r"ONNX file not found: .*missing\.onnx"),
        ("already fp16", ValueError, "already holds float16 weights"),
        ("no metadata", ValueError, r"plain\.onnx has no steelfast metadata"),
    ],
)
def test_to_fp16_onnx_rejects(tiny: tuple[Path, Path], tmp_path: Path, case: str, error: type, match: str) -> None:
    src = {
        "bad suffix": lambda: tiny[1],
        "missing source": lambda: tmp_path / "missing.onnx",
        "already fp16": lambda: to_fp16_onnx(tiny[1], tmp_path / "half.onnx"),
        "no metadata": lambda: _no_metadata(tmp_path / "plain.onnx"),
    }[case]()
    dst = tmp_path / ("out.txt" if case == "bad suffix" else "out.onnx")
    with pytest.raises(error, match=match):
        to_fp16_onnx(src, dst)
    assert not dst.exists()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p: convert_to_fp16(str(p)), TypeError, "model must be an onnx.ModelProto, got str"),
        (lambda p: onnx_precision(3), TypeError, "model must be an ONNX file path or an onnx.ModelProto, got int"),
        (lambda p: export_onnx(tiny_unet(), p / "m.onnx", precision="bf16"), ValueError,
         "precision must be one of 'fp32', 'fp16', got 'bf16'"),
    ],
)
def test_fp16_functions_reject_bad_arguments(tmp_path: Path, call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call(tmp_path)


def test_missing_converter_says_what_to_install(tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)  # import fails as if not installed
    install = r"needs onnxconverter-common: pip install 'steelfast\[onnx\]'"
    with pytest.raises(ImportError, match=install):
        to_fp16_onnx(tiny[1], tmp_path / "half.onnx")
    with pytest.raises(ImportError, match=install):
        export_onnx(tiny[0], tmp_path / "direct.onnx", precision="fp16")
    assert not (tmp_path / "half.onnx").exists() and not (tmp_path / "direct.onnx").exists()
