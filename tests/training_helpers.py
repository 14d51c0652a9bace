"""Helpers of the trainers' tests (importable as ``training_helpers``): a tiny Kaggle-layout
folder and a fast training config for the U-Net, a small labelled set for the gated model."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from steelfast.rle import encode
from steelfast.training.config import TrainConfig

__all__ = ["H", "TINY_ARCH", "W", "gated_set", "tiny_config", "write_dataset"]

H, W = 32, 128
TINY_ARCH = {"in_channels": 3, "widths": [4, 8], "decoder_widths": [8, 4], "bottleneck": 8}


def write_dataset(root: Path, n: int = 16, seed: int = 0) -> Path:
    """Kaggle layout, n small grey images: bright class-1 and dark class-3 boxes, some empty."""
    rng = np.random.default_rng(seed)
    (root / "train_images").mkdir(parents=True)
    rows = []
    for i in range(n):
        image = rng.normal(120, 10, (H, W)).clip(0, 255).astype(np.uint8)
        for cls, value in ((1, 230), (3, 20)):
            if rng.random() < 0.5:
                r, c = int(rng.integers(0, H - 10)), int(rng.integers(0, W - 30))
                mask = np.zeros((H, W), np.uint8)
                mask[r : r + 10, c : c + 30] = 1
                image[mask > 0] = value
                rows.append((f"img{i:03d}.png", cls, encode(mask)))
        cv2.imwrite(str(root / "train_images" / f"img{i:03d}.png"), image)
    pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"]).to_csv(
        root / "train.csv", index=False
    )
    return root


def tiny_config(**kw) -> TrainConfig:
    base = {
        "epochs": 1,
        "batch_size": 4,
        "lr": 1e-2,
        "only_defects": False,
        "val_fraction": 0.25,
        "architecture": dict(TINY_ARCH),
        "progress": False,
        "threads": 1,
        "tune_min_areas": (0, 2000),
    }
    base.update(kw)
    return TrainConfig(**base)


def gated_set(n_full: int, n_weak: int, seed: int = 0):
    """A LabelledSet of full-size images for the gated trainer: every other image holds a dark class-3 box;
    the last ``n_weak`` keep their presence only."""
    from steelfast.data.real import LabelledSet

    rng = np.random.default_rng(seed)
    n = n_full + n_weak
    images = rng.integers(80, 120, (n, 256, 1600), dtype=np.uint8)
    presence = np.zeros((n, 4), bool)
    masks: list = []
    for i in range(n):
        m = np.zeros((4, 256, 1600), np.uint8)
        if i % 2 == 0:
            m[2, 60:120, 300:700] = 1
            images[i][m[2] > 0] = 30  # a dark class-3 patch
            presence[i, 2] = True
        masks.append(m if i < n_full else None)
    return LabelledSet([f"{i}.jpg" for i in range(n)], images, presence, np.arange(n) < n_full, masks)
