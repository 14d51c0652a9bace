"""Segmenter, the folder pipeline and the robust file writer (failures, atomic output, resume)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from steelfast import rle
from steelfast.backends import TorchBackend
from steelfast.checkpoint import default_metadata, save_checkpoint
from steelfast.images import to_model_input
from steelfast.models import UNet
from steelfast.segment import Segmenter, iter_segment_folder, segment_folder, segment_to_file

THRESHOLDS = [0.5, 0.45, 0.55, 0.5]
MIN_AREAS = [0, 20, 0, 50]


def tiny_unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(widths=(4, 4, 4, 4, 4), bottleneck=8, decoder_widths=(4, 4, 4, 4, 4)).eval()


def metadata(model: UNet) -> dict:
    meta = default_metadata(model)
    meta["postprocess"] = {"thresholds": THRESHOLDS, "min_areas": MIN_AREAS}
    return meta


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    model = tiny_unet()
    return TorchBackend(model, metadata(model), device="cpu", precision="fp32", compile=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", tiny_unet(),
                           {"postprocess": {"thresholds": THRESHOLDS, "min_areas": MIN_AREAS}})


def images(n: int, h: int = 64, w: int = 128, seed: int = 0) -> np.ndarray:
    """Smooth random uint8 images (N, H, W): blobs, so masks have runs rather than noise."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
    return np.stack([cv2.GaussianBlur(g, (7, 7), 3) for g in noise])


def oracle(backend: TorchBackend, gray: np.ndarray, thresholds=THRESHOLDS, min_areas=MIN_AREAS) -> list[str]:
    """Pad with edge pixels, run the backend, crop, threshold and encode in NumPy/Python."""
    h, w = gray.shape
    hp, wp = -(-h // 32) * 32, -(-w // 32) * 32
    padded = np.pad(gray, ((0, hp - h), (0, wp - w)), mode="edge")
    meta = backend.metadata
    x = to_model_input(padded, meta["normalization"]["mean"], meta["normalization"]["std"], 3)
    probs = backend.predict_proba(x)[0, :, :h, :w].astype(np.float32)
    out = []
    for c in range(4):
        mask = (probs[c] > thresholds[c]).astype(np.uint8)
        out.append(rle.encode(mask) if mask.sum() >= min_areas[c] else "")
    return out


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


def test_missing_default_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import steelfast.checkpoint

    monkeypatch.setattr(steelfast.checkpoint, "default_checkpoint_path", lambda: tmp_path / "default.safetensors")
    with pytest.raises(FileNotFoundError, match="default model .*default.safetensors is missing"):
        Segmenter()


# ---- folders ------------------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    for i, gray in enumerate(images(7, seed=11)):
        cv2.imwrite(str(d / f"img{i:02d}.jpg"), gray)
    (d / "img03.jpg").write_bytes(b"this is not a jpeg")
    data = (d / "img05.jpg").read_bytes()
    (d / "img05.jpg").write_bytes(data[: len(data) // 2])  # truncated
    (d / "notes.txt").write_text("ignored")
    return d


def test_segment_folder_skips_bad_files_and_keeps_the_rest(backend: TorchBackend, folder: Path) -> None:
    frame = segment_folder(folder, segmenter=Segmenter(backend=backend, batch_size=2))
    good = [f"img{i:02d}.jpg" for i in (0, 1, 2, 4, 6)]
    assert frame["ImageId"].tolist() == [g for g in good for _ in range(4)]
    assert frame["ClassId"].tolist() == [1, 2, 3, 4] * 5
    assert set(frame.attrs["failures"]) == {"img03.jpg", "img05.jpg"}
    assert "img05.jpg" in frame.attrs["failures"]["img05.jpg"]
    for image_id, group in frame.groupby("ImageId"):
        gray = cv2.imread(str(folder / image_id), cv2.IMREAD_GRAYSCALE)
        assert group["EncodedPixels"].tolist() == oracle(backend, gray)


def test_iter_segment_folder_streams_results(backend: TorchBackend, folder: Path) -> None:
    results = list(iter_segment_folder(folder, segmenter=Segmenter(backend=backend, batch_size=3), skip=["img00.jpg"]))
    assert sorted(r.image_id for r in results) == [f"img{i:02d}.jpg" for i in range(1, 7)]
    assert {r.image_id for r in results if r.error} == {"img03.jpg", "img05.jpg"}
    assert all(len(r.encoded) == 4 for r in results if r.error is None)


def test_empty_folder_is_an_error(backend: TorchBackend, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in .*empty"):
        segment_folder(tmp_path / "empty", segmenter=Segmenter(backend=backend))


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".xlsx"])
def test_segment_to_file_writes_output_and_failures(backend: TorchBackend, folder: Path, tmp_path: Path, suffix: str) -> None:
    needs = {".parquet": "pyarrow", ".xlsx": "openpyxl"}
    if suffix in needs:
        pytest.importorskip(needs[suffix], reason=f"writing {suffix} needs {needs[suffix]}")
    out = tmp_path / "out" / f"sub{suffix}"
    summary = segment_to_file(folder, out, segmenter=Segmenter(backend=backend, batch_size=2), progress=False)
    assert summary.images == 5 and summary.processed == 5 and summary.resumed == 0
    assert set(summary.failures) == {"img03.jpg", "img05.jpg"}
    failures = pd.read_csv(summary.failures_file)
    assert sorted(failures["file"]) == ["img03.jpg", "img05.jpg"]
    table = pd.read_csv(out, keep_default_na=False) if suffix == ".csv" else (
        pd.read_parquet(out) if suffix == ".parquet" else pd.read_excel(out).fillna(""))
    assert len(table) == 20 and list(table.columns) == ["ImageId", "ClassId", "EncodedPixels"]
    assert not (out.parent / f"sub{suffix}.partial").exists()
    assert "5 images" in summary.line() and "2 failures" in summary.line()


def test_resume_after_an_interruption(backend: TorchBackend, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean = tmp_path / "clean.csv"
    segment_to_file(folder, clean, segmenter=Segmenter(backend=backend, batch_size=2), progress=False)

    out = tmp_path / "sub.csv"
    seg = Segmenter(backend=backend, batch_size=2)
    real = Segmenter.predict_proba
    calls = {"n": 0}

    def crash_after_two(self: Segmenter, grays: list) -> list:
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt("simulated kill")
        return real(self, grays)

    monkeypatch.setattr(Segmenter, "predict_proba", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        segment_to_file(folder, out, segmenter=seg, progress=False)
    monkeypatch.setattr(Segmenter, "predict_proba", real)
    assert not out.exists()  # the output is only ever written whole
    journal = tmp_path / "sub.csv.partial"
    done_before = [json.loads(line)["id"] for line in journal.read_text().splitlines()]
    assert 2 <= len(done_before) <= 4
    with open(journal, "a") as fh:
        fh.write('{"id": "img06.jpg", "rles": ["1 ')  # a torn line from a kill mid-write

    summary = segment_to_file(folder, out, segmenter=seg, progress=False, resume=True)
    assert summary.resumed == len(done_before)
    assert summary.processed == 5 - len(done_before)
    assert out.read_text() == clean.read_text()  # same rows, no duplicates

    again = segment_to_file(folder, out, segmenter=seg, progress=False, resume=True)
    assert again.processed == 0 and again.resumed == 5
    assert out.read_text() == clean.read_text()


def test_overlays_are_written(backend: TorchBackend, folder: Path, tmp_path: Path) -> None:
    segment_to_file(folder, tmp_path / "s.csv", segmenter=Segmenter(backend=backend, batch_size=4),
                    progress=False, overlays=tmp_path / "ov")
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == [f"img{i:02d}.png" for i in (0, 1, 2, 4, 6)]


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
