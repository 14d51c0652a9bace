"""NumPy reference implementations, the oracles the compiled core is tested against.

These are the widely copied Kaggle kernels' codecs, kept deliberately simple: slow, but obviously right.
"""

from __future__ import annotations

import numpy as np

__all__ = ["components_reference", "dice_reference", "mask2rle", "rle2mask"]


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


def components_reference(mask: np.ndarray, probs: np.ndarray) -> list[dict]:
    """8-connected components of a 2-D mask by OpenCV, ordered by their first pixel in column-major order.

    Each is ``{"bbox": (x, y, w, h), "area", "mean", "max", "mask"}``, its scores over ``probs`` (float64).
    """
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats((np.asarray(mask) != 0).astype(np.uint8), connectivity=8)
    ids, first = np.unique(labels.T.ravel(), return_index=True)  # first pixel of each label, column-major
    out = []
    for label in ids[np.argsort(first)]:
        if label == 0:  # the background
            continue
        x, y, w, h, area = (int(v) for v in stats[label])
        values = np.asarray(probs, np.float64)[labels == label]
        out.append({"bbox": (x, y, w, h), "area": area, "mean": float(values.mean()), "max": float(values.max()),
                    "mask": (labels == label).astype(np.uint8)})
    return out
