"""Helpers shared by the inference tests (importable as ``segment_helpers``): a tiny U-Net, its
metadata, smooth test images, a folder of them with two bad files, and a NumPy/Python oracle of
the Segmenter."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from steelfast import rle
from steelfast.checkpoint import default_metadata, save_checkpoint
from steelfast.images import to_model_input
from steelfast.inference.backends.torch_backend import TorchBackend
from steelfast.models import UNet

__all__ = ["MIN_AREAS", "SIZE", "THRESHOLDS", "images", "make_folder", "metadata", "oracle", "tiny_checkpoint", "tiny_unet", "torch_backend"]

THRESHOLDS = [0.5, 0.45, 0.55, 0.5]
MIN_AREAS = [0, 20, 0, 50]
SIZE = (64, 128)  # the image size of the folder fixtures (a Kaggle folder has 256x1600)


def tiny_unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(widths=(4, 4, 4, 4, 4), bottleneck=8, decoder_widths=(4, 4, 4, 4, 4)).eval()


def metadata(model: UNet) -> dict:
    meta = default_metadata(model)
    meta["postprocess"] = {"thresholds": THRESHOLDS, "min_areas": MIN_AREAS}
    return meta


def tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    """The tiny U-Net saved in ``folder`` with the test thresholds and minimum areas."""
    return save_checkpoint(folder / "tiny.safetensors", tiny_unet(seed),
                           {"postprocess": {"thresholds": THRESHOLDS, "min_areas": MIN_AREAS}})


def torch_backend(seed: int = 0, precision: str = "fp32") -> TorchBackend:
    model = tiny_unet(seed)
    return TorchBackend(model, metadata(model), device="cpu", precision=precision, compile=False)


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


def make_folder(tmp_path: Path) -> Path:
    """``tmp_path/imgs``: seven 64x128 JPEGs, of which img03 is not a JPEG and img05 is truncated,
    and a text file."""
    d = tmp_path / "imgs"
    d.mkdir()
    for i, gray in enumerate(images(7, seed=11)):
        cv2.imwrite(str(d / f"img{i:02d}.jpg"), gray)
    (d / "img03.jpg").write_bytes(b"this is not a jpeg")
    data = (d / "img05.jpg").read_bytes()
    (d / "img05.jpg").write_bytes(data[: len(data) // 2])  # truncated
    (d / "notes.txt").write_text("ignored")
    return d
