"""Segmenter (steelfast.inference.segmenter): predictions against a NumPy oracle, options, models from files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from segment_helpers import (
    MIN_AREAS,
    THRESHOLDS,
    images,
    oracle,
    tiny_unet,
)

from steelfast import rle
from steelfast.checkpoint import save_checkpoint
from steelfast.images import to_model_input
from steelfast.inference.backends.torch_backend import TorchBackend
from steelfast.inference.segmenter import Segmenter


@pytest.mark.parametrize(("h", "w"), [(64, 128), (100, 150), (32, 32), (256, 96)])
def test_predict_matches_the_oracle_at_the_original_size(backend: TorchBackend, h: int, w: int) -> None:
    grays = images(3, h, w, seed=h + w)
    got = Segmenter(backend=backend, batch_size=2).predict(grays)
    assert len(got) == 3
    for gray, texts in zip(grays, got):
        assert texts == oracle(backend, gray)
        for t in texts:  # every mask decodes at the original size
            assert rle.decode(t, (h, w)).shape == (h, w)


def test_predict_mixed_sizes_and_paths(backend: TorchBackend, tmp_path: Path) -> None:
    a, b = images(1, 64, 128, seed=1)[0], images(1, 70, 90, seed=2)[0]
    cv2.imwrite(str(tmp_path / "b.png"), b)
    got = Segmenter(backend=backend, batch_size=4).predict([a, tmp_path / "b.png"])
    assert got == [oracle(backend, a), oracle(backend, b)]


def test_predict_uses_checkpoint_postprocess_and_overrides(backend: TorchBackend) -> None:
    grays = images(2, seed=5)
    seg = Segmenter(backend=backend)
    assert seg.thresholds == THRESHOLDS and seg.min_areas == MIN_AREAS
    loose = Segmenter(backend=backend, thresholds=0.3, min_areas=[0, 0, 0, 0])
    assert loose.predict(grays) == [oracle(backend, g, [0.3] * 4, [0] * 4) for g in grays]


def test_min_area_empties_small_masks(backend: TorchBackend) -> None:
    grays = images(2, seed=6)
    huge = Segmenter(backend=backend, thresholds=0.0, min_areas=10**6).predict(grays)
    assert huge == [["", "", "", ""]] * 2


def test_tta_averages_flips(backend: TorchBackend) -> None:
    gray = images(1, seed=7)[0]
    meta = backend.metadata
    x = to_model_input(gray, meta["normalization"]["mean"], meta["normalization"]["std"], 3)
    probs = backend.predict_proba(x).astype(np.float32)
    probs += np.flip(backend.predict_proba(np.ascontiguousarray(np.flip(x, 3))), 3)
    probs += np.flip(backend.predict_proba(np.ascontiguousarray(np.flip(x, 2))), 2)
    probs /= 3
    want = [rle.encode((probs[0, c] > THRESHOLDS[c]).astype(np.uint8)) for c in range(4)]
    want = [t if rle.area(t, (64, 128)) >= MIN_AREAS[c] else "" for c, t in enumerate(want)]
    assert Segmenter(backend=backend, tta=True).predict(gray[None]) == [want]


def test_predict_as_frame(backend: TorchBackend) -> None:
    frame = Segmenter(backend=backend).predict(images(2), as_frame=True, image_ids=["a.jpg", "b.jpg"])
    assert list(frame.columns) == ["ImageId", "ClassId", "EncodedPixels"]
    assert frame["ImageId"].tolist() == ["a.jpg"] * 4 + ["b.jpg"] * 4
    assert frame["ClassId"].tolist() == [1, 2, 3, 4] * 2


@pytest.mark.parametrize(
    ("arg", "error", "match"),
    [
        (np.zeros((2, 64, 128), np.float32), TypeError, "image 0 must be uint8, got dtype float32"),
        ([np.zeros((64, 128, 3), np.uint8)], ValueError, r"image 0 must be a non-empty \(H, W\) array, got shape \(64, 128, 3\)"),
        (np.zeros((1, 1, 64, 128), np.uint8), ValueError, r"\(N, H, W\) or \(H, W\), got shape \(1, 1, 64, 128\)"),
    ],
)
def test_predict_rejects_bad_images(backend: TorchBackend, arg: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        Segmenter(backend=backend).predict(arg)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"batch_size": 0}, "batch_size must be a positive int, got 0"),
     ({"thresholds": [0.5, 0.5]}, r"thresholds needs one value per class \(4\)"),
     ({"thresholds": 1.5}, r"thresholds must lie in \[0, 1\], got 1.5"),
     ({"min_areas": -1}, "min_areas must be >= 0, got -1")],
)
def test_segmenter_rejects_bad_options(backend: TorchBackend, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Segmenter(backend=backend, **kwargs)


@pytest.mark.parametrize("batch_size", [True, 2.0, "4"])
def test_segmenter_batch_size_of_the_wrong_type(backend: TorchBackend, batch_size: object) -> None:
    with pytest.raises(TypeError, match=f"batch_size must be a positive int, got {type(batch_size).__name__}"):
        Segmenter(backend=backend, batch_size=batch_size)


def test_segmenter_takes_numpy_integers(backend: TorchBackend) -> None:
    assert Segmenter(backend=backend, batch_size=np.int64(3)).batch_size == 3


def test_missing_default_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import steelfast.model_files

    monkeypatch.setattr(steelfast.model_files, "default_checkpoint_path", lambda: tmp_path / "default.safetensors")
    with pytest.raises(FileNotFoundError, match="default model .*default.safetensors is missing"):
        Segmenter()


def test_segmenter_from_checkpoint_path(checkpoint: Path) -> None:
    seg = Segmenter(checkpoint, backend="torch", compile=False)
    assert seg.thresholds == THRESHOLDS and seg.min_areas == MIN_AREAS
    assert len(seg.predict(images(1))[0]) == 4


@pytest.mark.parametrize(("recorded", "asked", "expected"), [(None, None, False), (True, None, True), (True, False, False), (False, True, True)])
def test_tta_default_follows_the_checkpoint(tmp_path: Path, recorded, asked, expected: bool) -> None:
    post = {"thresholds": THRESHOLDS, "min_areas": MIN_AREAS}
    if recorded is not None:
        post["tta"] = recorded
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_unet(), {"postprocess": post})
    seg = Segmenter(path, backend="torch", compile=False, tta=asked)
    assert seg.tta is expected


# ---- ONNX with the default backend --------------------------------------------------------------


def test_an_onnx_file_runs_with_the_auto_backend(checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="running ONNX needs onnxruntime")
    from steelfast.inference.export import export_onnx

    onnx = export_onnx(checkpoint, tmp_path / "m.onnx")
    seg = Segmenter(onnx)  # backend="auto"
    assert seg.backend.name in ("onnxruntime", "tensorrt")
    assert seg.identity()["model_sha256"] == hashlib.sha256(onnx.read_bytes()).hexdigest()
    assert [len(texts) for texts in seg.predict(images(2, seed=9))] == [4, 4]
