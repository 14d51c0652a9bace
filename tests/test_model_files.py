"""Tests for steelfast.model_files: the bundled models, which file a model argument names, and weight hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from steelfast.checkpoint import load_checkpoint
from steelfast.model_files import (
    bundled_checkpoint_path,
    bundled_name,
    default_checkpoint_path,
    file_sha256,
    model_file_sha256,
    resolve_model,
)


def test_default_checkpoint_path_is_in_the_package() -> None:
    path = default_checkpoint_path()
    assert path.name == "default.safetensors" and path.parent.name == "weights"


@pytest.mark.parametrize(("name", "arch"), [("default", "gated-effnet-lite0"), ("synthetic-unet", "unet")])
def test_bundled_models_load(name: str, arch: str) -> None:
    model, meta = load_checkpoint(bundled_checkpoint_path(name))
    assert meta["architecture"]["name"] == arch
    trained_on = json.dumps(meta["training"])
    assert ("real" in meta["training"].get("trained_on", "")) == (name == "default"), trained_on[:200]


def test_bundled_model_unknown_name() -> None:
    with pytest.raises(ValueError, match="no bundled model 'nope'"):
        bundled_checkpoint_path("nope")


@pytest.mark.parametrize("name", ["default", "synthetic-unet"])
def test_a_bundled_model_is_found_by_its_name(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_model(name) == bundled_name(name) == bundled_checkpoint_path(name)
    (tmp_path / name).mkdir()  # a folder of that name is no model: the bundled one is still found
    assert resolve_model(name) == bundled_checkpoint_path(name)
    (tmp_path / name).rmdir()
    (tmp_path / name).write_bytes(b"a local file of that name wins")
    assert resolve_model(name) == Path(name) and bundled_name(name) == name


def test_a_name_that_is_no_bundled_model_stays_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert bundled_name("other-unet") == "other-unet"
    with pytest.raises(FileNotFoundError, match="model not found: other-unet"):
        resolve_model("other-unet")


@pytest.mark.parametrize("given", ["m.safetensors", "m.json", "model.onnx"])
def test_model_file_sha256_hashes_the_weights_file(tmp_path: Path, given: str) -> None:
    (tmp_path / "m.safetensors").write_bytes(b"weights")
    (tmp_path / "m.json").write_bytes(b"metadata")
    (tmp_path / "model.onnx").write_bytes(b"graph")
    holder = "model.onnx" if given.endswith(".onnx") else "m.safetensors"
    expected = hashlib.sha256((tmp_path / holder).read_bytes()).hexdigest()
    assert model_file_sha256(tmp_path / given) == file_sha256(tmp_path / holder) == expected


def test_file_sha256_reads_large_files_in_chunks(tmp_path: Path) -> None:
    blob = bytes(range(256)) * (5 * 4096 + 7)  # over 1 MiB: more than one chunk
    (tmp_path / "big.bin").write_bytes(blob)
    assert file_sha256(tmp_path / "big.bin") == hashlib.sha256(blob).hexdigest()
