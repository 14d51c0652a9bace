"""ONNX export: parity with PyTorch through ONNX Runtime, metadata, input errors (the TensorRT
engine cache is tested in test_tensorrt_engine.py, the float16 model in test_onnx_fp16.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from steelfast.checkpoint import save_checkpoint
from steelfast.inference.export import export_onnx
from steelfast.inference.onnx_file import read_onnx_metadata
from steelfast.models import UNet

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed for the ONNX parity tests")
onnx = pytest.importorskip("onnx", reason="onnx is needed for the export tests")

# float32 ONNX Runtime against float32 PyTorch: only summation order differs.
ONNX_ATOL = 1e-5


def tiny_unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(widths=(4, 4, 4, 4, 4), bottleneck=8, decoder_widths=(4, 4, 4, 4, 4)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[UNet, Path]:
    folder = tmp_path_factory.mktemp("export")
    model = tiny_unet()
    ckpt = save_checkpoint(folder / "tiny.safetensors", model, {"postprocess": {"min_areas": [5, 6, 7, 8]}})
    return model, export_onnx(ckpt, folder / "tiny.onnx")


@pytest.mark.parametrize("shape", [(1, 64, 128), (3, 64, 128), (2, 96, 160)])
def test_onnx_matches_torch(exported: tuple[UNet, Path], shape: tuple[int, int, int]) -> None:
    model, path = exported
    x = np.random.default_rng(shape[0]).normal(size=(shape[0], 3, shape[1], shape[2])).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["probabilities"], {"image": x})
    with torch.no_grad():
        want = torch.sigmoid(model(torch.from_numpy(x))).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=ONNX_ATOL, rtol=0)


def test_onnx_file_has_dynamic_batch_and_metadata(exported: tuple[UNet, Path]) -> None:
    _, path = exported
    proto = onnx.load(str(path))
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value  # symbolic batch
    assert dims[1].dim_value == 3
    meta = read_onnx_metadata(path)
    assert meta["postprocess"]["min_areas"] == [5, 6, 7, 8]
    assert meta["architecture"]["widths"] == [4, 4, 4, 4, 4]


def test_export_opset_17(tmp_path: Path) -> None:
    path = export_onnx(tiny_unet(), tmp_path / "m.onnx", opset=17)
    assert {op.version for op in onnx.load(str(path)).opset_import if op.domain in ("", "ai.onnx")} == {17}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"opset": 16}, "opset must be an int >= 17, got 16"), ({"sample_shape": (60, 128)}, r"multiples of 32, got \(60, 128\)")],
)
def test_export_rejects_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        export_onnx(tiny_unet(), tmp_path / "m.onnx", **kwargs)


@pytest.mark.parametrize("opset", [17.0, True, "17"])
def test_export_opset_of_the_wrong_type(tmp_path: Path, opset: object) -> None:
    with pytest.raises(TypeError, match=f"opset must be an int >= 17, got {type(opset).__name__}"):
        export_onnx(tiny_unet(), tmp_path / "m.onnx", opset=opset)


def test_export_rejects_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must end with .onnx, got '.*m.txt'"):
        export_onnx(tiny_unet(), tmp_path / "m.txt")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        export_onnx(tmp_path / "missing.safetensors", tmp_path / "m.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.onnx"):
        read_onnx_metadata(bad)


def _onnx_with_metadata(path: Path, value: str) -> Path:
    """A one-node ONNX file carrying ``value`` as its steelfast metadata (no export needed)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    proto = helper.make_model(graph)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "steelfast", value
    onnx.save_model(proto, str(path))
    return path


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"postprocess": {"thresholds": [0.5] * 4, "min_areas": [-1, 0, 0, 0]}}, "postprocess min_areas must be ints >= 0"),
        ({"normalization": {"mean": 0.5, "std": 0.0}}, "normalization must be"),
        ({"format": "other/9"}, "unknown checkpoint format 'other/9'"),
    ],
)
def test_read_onnx_metadata_validates_like_a_checkpoint(tmp_path: Path, change: dict, match: str) -> None:
    from steelfast.checkpoint import default_metadata
    from steelfast.model_metadata import CheckpointError

    meta = {**default_metadata(tiny_unet()), **change}
    good = _onnx_with_metadata(tmp_path / "good.onnx", json.dumps(default_metadata(tiny_unet())))
    assert read_onnx_metadata(good)["postprocess"]["thresholds"] == [0.5] * 4
    bad = _onnx_with_metadata(tmp_path / "bad.onnx", json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"bad.onnx: {match}"):
        read_onnx_metadata(bad)


def test_read_onnx_metadata_bad_json_names_the_file(tmp_path: Path) -> None:
    bad = _onnx_with_metadata(tmp_path / "bad.onnx", "{nope")
    with pytest.raises(ValueError, match="bad.onnx: steelfast metadata is not valid JSON"):
        read_onnx_metadata(bad)


def test_export_refuses_metadata_it_could_not_read_back(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"m\.onnx: postprocess thresholds must list 4 values"):
        export_onnx(tiny_unet(), tmp_path / "m.onnx", metadata={"format": "steelfast-checkpoint/1", "architecture": {}, "classes": [1, 2, 3, 4], "input": {}, "normalization": {}, "postprocess": {}})
    assert not (tmp_path / "m.onnx").exists()
