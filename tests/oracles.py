"""NumPy reference implementations, the oracles the compiled core is tested against.

These are the widely copied Kaggle kernels' codecs, kept deliberately simple: slow, but obviously right.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mask2rle", "rle2mask", "dice_reference"]


def mask2rle(mask: np.ndarray) -> str:
    """RLE of a 2-D mask, column-major, 1-indexed (the classic Kaggle ``mask2rle``)."""
    pixels = (np.asarray(mask).T.flatten() != 0).astype(np.int8)
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def rle2mask(rle: str, shape: tuple[int, int] = (256, 1600)) -> np.ndarray:
    """Decode RLE into an (H, W) uint8 mask (the classic Kaggle ``rle2mask`` loop)."""
    height, width = shape
    flat = np.zeros(height * width, dtype=np.uint8)
    tokens = rle.split() if isinstance(rle, str) else []
    starts = np.asarray(tokens[0::2], dtype=np.int64) - 1
    lengths = np.asarray(tokens[1::2], dtype=np.int64)
    for lo, n in zip(starts, lengths):
        flat[lo : lo + n] = 1
    return flat.reshape(width, height).T


def dice_reference(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|X n Y| / (|X| + |Y|), 1 when both are empty."""
    x, y = np.asarray(pred) != 0, np.asarray(truth) != 0
    total = x.sum() + y.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(x, y).sum() / total
