"""Image files: fast grayscale decoding, folder listing and the model-input transform.

The Severstal images are 1600x256 JPEGs that store grey as RGB (R = G = B). Decoding straight to
grayscale returns the JPEG luma plane, which for such files equals the RGB channels, so no colour
conversion is needed. ``bench/bench_images.py`` times OpenCV, simplejpeg and PIL's draft mode on the
real images: OpenCV's ``imdecode(IMREAD_GRAYSCALE)`` and simplejpeg are nearly tied (about 1.1 ms
per image; simplejpeg 2-4 % ahead), PIL's draft mode takes 1.2 ms and a full PIL decode 1.5 ms; all
give the same pixels. :func:`read_gray` uses OpenCV: the 0.04 ms simplejpeg would save is noise next
to the rest of a training step, and OpenCV is a core dependency (simplejpeg is not) that also reads
PNG/BMP/TIFF, so there is one code path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import cv2
import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageReadError",
    "decode_gray",
    "list_images",
    "read_gray",
    "to_model_input",
]

PathLike = Union[str, "os.PathLike[str]"]

#: File suffixes :func:`list_images` accepts (compared case-insensitively).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


class ImageReadError(ValueError):
    """An image file is missing its data, truncated, corrupt or not an image."""


def decode_gray(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, TIFF) to grayscale.

    Args:
        data: The encoded file contents.
        name: What to call the data in error messages (usually the file path).

    Returns:
        np.ndarray: uint8 (H, W), C-contiguous.

    Raises:
        ImageReadError: ``data`` is empty, truncated or not a decodable image.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_gray expects bytes, got {type(data).__name__} for {name}")
    data = bytes(data) if not isinstance(data, bytes) else data
    if len(data) == 0:
        raise ImageReadError(f"cannot read image {name}: the file is empty")
    if data[:2] == _JPEG_SOI and _JPEG_EOI not in data[-64:] and _JPEG_EOI not in data:
        # A JPEG cut short still decodes partially in some libjpeg builds; the missing end marker
        # is the reliable sign (FF D9 cannot occur inside entropy-coded data, which stuffs FF 00).
        raise ImageReadError(
            f"cannot read image {name}: truncated JPEG ({len(data)} bytes, no end marker)"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if img is None or img.size == 0:
        head = bytes(data[:8]).hex()
        raise ImageReadError(
            f"cannot read image {name}: not a decodable image ({len(data)} bytes, starts with 0x{head})"
        )
    if img.dtype != np.uint8:  # 16-bit PNG/TIFF: keep the high byte, as a viewer would
        img = (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else img.astype(np.uint8)
    return np.ascontiguousarray(img)


def read_gray(path: PathLike) -> np.ndarray:
    """Read an image file as grayscale.

    Args:
        path: An image file (JPEG, PNG, BMP or TIFF).

    Returns:
        np.ndarray: uint8 (H, W), C-contiguous; a Severstal image gives (256, 1600).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageReadError: the file is empty, truncated, corrupt or not an image (the message names it).
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {p}") from None
    except IsADirectoryError:
        raise ImageReadError(f"cannot read image {p}: it is a directory") from None
    return decode_gray(data, str(p))


def list_images(folder: PathLike) -> list[Path]:
    """List the image files directly inside a folder.

    Args:
        folder: A directory.

    Returns:
        list[Path]: Files whose suffix is in :data:`IMAGE_SUFFIXES` (any case), sorted by name.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        NotADirectoryError: ``folder`` is a file.
    """
    d = Path(folder)
    if not d.exists():
        raise FileNotFoundError(f"image folder not found: {d}")
    if not d.is_dir():
        raise NotADirectoryError(f"expected an image folder, got a file: {d}")
    files = [p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(files, key=lambda p: p.name)


def to_model_input(
    gray: np.ndarray,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    channels: int,
) -> np.ndarray:
    """Turn grey images into the float input of the model: ``(x / 255 - mean) / std``, replicated.

    Training (:class:`steelfast.dataset.SteelDataset`) and inference both call this, so the two can
    not drift apart.

    Args:
        gray: uint8 (H, W) or (N, H, W).
        mean: Mean in 0..1 units; a scalar, or one value per output channel.
        std: Standard deviation in 0..1 units; a scalar, or one value per output channel.
        channels: Number of output channels (1 or 3 for the shipped models).

    Returns:
        np.ndarray: float32 (N, channels, H, W), C-contiguous (N = 1 for a single image).

    Raises:
        TypeError: ``gray`` is not uint8.
        ValueError: bad ndim, ``channels`` < 1, a std <= 0, or per-channel values of the wrong length.
    """
    arr = np.asarray(gray)
    if arr.dtype != np.uint8:
        raise TypeError(f"to_model_input expects uint8 images, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(
            f"to_model_input expects (H, W) or (N, H, W), got shape {tuple(np.shape(gray))}"
        )
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    m = np.asarray(mean, dtype=np.float32).reshape(-1)
    s = np.asarray(std, dtype=np.float32).reshape(-1)
    for name, v in (("mean", m), ("std", s)):
        if v.size not in (1, channels):
            raise ValueError(f"{name} must be a scalar or have {channels} values, got {v.tolist()}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name} must be finite, got {v.tolist()}")
    if np.any(s <= 0):
        raise ValueError(f"std must be > 0, got {s.tolist()}")
    n, h, w = arr.shape
    out = np.empty((n, channels, h, w), dtype=np.float32)
    # (x/255 - m)/s == x * (1/(255 s)) - m/s: one multiply-add per pixel.
    scale = (1.0 / (255.0 * s)).astype(np.float32)
    shift = (m / s).astype(np.float32)
    if scale.size == 1 and shift.size == 1:
        plane = arr.astype(np.float32) * scale[0] - shift[0]
        out[:] = plane[:, None]
    else:
        scale = np.broadcast_to(scale, (channels,))
        shift = np.broadcast_to(shift, (channels,))
        x = arr.astype(np.float32)
        for c in range(channels):
            np.multiply(x, scale[c], out=out[:, c])
            out[:, c] -= shift[c]
    return out
