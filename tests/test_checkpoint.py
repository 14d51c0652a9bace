"""Tests for steelfast.checkpoint and steelfast.model_metadata: round trips, atomic pairs, and refusing code-running files."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from steelfast.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from steelfast.model_metadata import CHECKPOINT_FORMAT, CheckpointError
from steelfast.models import UNet

TINY = {"widths": (4, 8), "decoder_widths": (8, 4), "bottleneck": 8}


def _model(seed: int = 0, **kw) -> UNet:
    torch.manual_seed(seed)
    return UNet(**{**TINY, **kw})


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_round_trip_weights_and_metadata(tmp_path, channels_last: bool, in_channels: int) -> None:
    model = _model(in_channels=in_channels)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    meta = {
        "postprocess": {"thresholds": [0.4, 0.5, 0.6, 0.7], "min_areas": [0, 100, 200, 300]},
        "normalization": {"mean": 0.3, "std": 0.2},
        "input": {"height": 32, "width": 64, "channels": in_channels},
        "training": {"epochs": 2, "images": 10},
    }
    path = save_checkpoint(tmp_path / "run" / "best.safetensors", model, meta)
    assert path == tmp_path / "run" / "best.safetensors"
    assert (tmp_path / "run" / "best.json").is_file()
    loaded, got = load_checkpoint(path)
    assert not loaded.training
    assert got["format"] == CHECKPOINT_FORMAT
    assert got["architecture"] == model.config
    assert got["classes"] == [1, 2, 3, 4]
    assert got["postprocess"] == meta["postprocess"]
    assert got["normalization"] == meta["normalization"]
    assert got["training"] == meta["training"]
    assert isinstance(got["steelfast_version"], str)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = torch.randn(2, in_channels, 32, 32)
    with torch.no_grad():
        # Same weights; a channels_last model may pick a different (equally exact) kernel.
        assert torch.allclose(model.eval()(x), loaded(x), atol=1e-5)
    # The JSON is readable on its own, and the .json path loads too.
    assert read_metadata(tmp_path / "run" / "best.json")["postprocess"] == meta["postprocess"]
    assert load_checkpoint(tmp_path / "run" / "best.json")[1] == got


def test_partial_metadata_merges_with_defaults(tmp_path) -> None:
    path = save_checkpoint(
        tmp_path / "m.safetensors", _model(), {"postprocess": {"thresholds": [0.3] * 4}}
    )
    meta = read_metadata(path)
    assert meta["postprocess"] == {"thresholds": [0.3] * 4, "min_areas": [0] * 4}
    assert set(meta["normalization"]) == {"mean", "std"}
    assert meta["input"]["channels"] == 3


def test_save_overwrites_atomically_and_leaves_no_temp_files(tmp_path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, _model(0))
    save_checkpoint(path, _model(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded.head.weight, _model(1).head.weight)


def test_mismatched_weights_and_metadata_are_detected(tmp_path) -> None:
    a = save_checkpoint(tmp_path / "a.safetensors", _model(0))
    b = save_checkpoint(tmp_path / "b.safetensors", _model(1))
    os.replace(b, a)  # weights of one save next to the metadata of another
    with pytest.raises(CheckpointError, match="do not match the hash"):
        load_checkpoint(a)


class _Bomb:
    """Unpickling this would run a shell command (the classic malicious checkpoint)."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickle_renamed_to_safetensors_is_refused_without_running_it(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = save_checkpoint(tmp_path / "m.safetensors", _model())
    meta = json.loads((tmp_path / "m.json").read_text())
    blob = pickle.dumps({"w": _Bomb()})
    path.write_bytes(blob)
    import hashlib

    meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"postprocess": {"thresholds": [0.5] * 3}}, "thresholds must list 4 values"),
        ({"postprocess": {"thresholds": [1.5] * 4}}, r"thresholds must be in \[0, 1\)"),
        ({"postprocess": {"min_areas": [-1, 0, 0, 0]}}, "min_areas must be ints >= 0"),
        ({"normalization": {"mean": 0.5, "std": 0.0}}, "normalization must be"),
        ({"postprocess": {"tta": "yes"}}, "postprocess tta must be true or false, got 'yes'"),
    ],
)
def test_bad_metadata_is_rejected_on_save(tmp_path, meta: dict, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        save_checkpoint(tmp_path / "m.safetensors", _model(), meta)


@pytest.mark.parametrize("name", ["m.pt", "m.bin", "m"])
def test_bad_suffix(tmp_path, name: str) -> None:
    with pytest.raises(CheckpointError, match="must end with .safetensors"):
        save_checkpoint(tmp_path / name, _model())


def test_missing_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="metadata"):
        load_checkpoint(tmp_path / "nope.safetensors")
    save_checkpoint(tmp_path / "m.safetensors", _model())
    (tmp_path / "m.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="weights"):
        load_checkpoint(tmp_path / "m.safetensors")


def test_wrong_format_and_bad_json(tmp_path) -> None:
    save_checkpoint(tmp_path / "m.safetensors", _model())
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["format"] = "other/9"
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown checkpoint format 'other/9'"):
        load_checkpoint(tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text("{nope")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_metadata(tmp_path / "m.json")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, bad: float) -> None:
    model = _model()
    with torch.no_grad():
        model.state_dict()["bottleneck.0.weight"].view(-1)[3] = bad
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    message = r"m\.safetensors: tensor 'bottleneck\.0\.weight' holds non-finite"
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_all_nan_weights_name_the_first_tensor_in_model_order(tmp_path) -> None:
    model = _model()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    first = next(iter(model.state_dict()))
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    with pytest.raises(CheckpointError, match=f"tensor '{first}' holds non-finite"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "arch",
    [
        {"name": "unet", "widths": [100_000, 100_000], "decoder_widths": [8, 4], "bottleneck": 8},
        {"name": "gated-effnet-lite0", "decoder_widths": [100_000] * 5},
    ],
)
def test_crafted_architecture_is_refused_before_any_allocation(tmp_path, monkeypatch, arch) -> None:
    import time

    import steelfast.checkpoint as ckpt

    path = save_checkpoint(tmp_path / "m.safetensors", _model())
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["architecture"] = arch
    (tmp_path / "m.json").write_text(json.dumps(meta))
    real_builds = []
    build = ckpt.build_model

    def spy(config):
        if torch.get_default_device().type != "meta":
            real_builds.append(config)
            raise AssertionError("the model was built with real storage before the shape check")
        return build(config)

    monkeypatch.setattr(ckpt, "build_model", spy)
    start = time.perf_counter()
    message = r"m\.safetensors: tensors do not fit the architecture in m\.json"
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    assert real_builds == []
    assert time.perf_counter() - start < 10


def test_truncated_safetensors_header_is_refused(tmp_path) -> None:
    import hashlib

    path = save_checkpoint(tmp_path / "m.safetensors", _model())
    blob = path.read_bytes()[:20]
    path.write_bytes(blob)
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"m\.safetensors: not a valid safetensors file"):
        load_checkpoint(path)


def test_validate_metadata_is_public_and_names_the_source() -> None:
    from steelfast.model_metadata import validate_metadata

    with pytest.raises(CheckpointError, match="^model.onnx: unknown checkpoint format"):
        validate_metadata({"format": "x"}, "model.onnx")
