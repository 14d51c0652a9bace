"""Image files: fast grayscale decoding, folder listing and the model-input transform.

The Severstal images are 1600x256 JPEGs that store grey as RGB (R = G = B). Decoding straight to
grayscale returns the JPEG luma plane, which for such files equals the RGB channels, so no colour
conversion is needed. ``bench/bench_images.py`` times OpenCV, simplejpeg and PIL's draft mode on the
real images: OpenCV's ``imdecode(IMREAD_GRAYSCALE)`` and simplejpeg are nearly tied (about 1.1 ms
per image; simplejpeg 2-4 % ahead), PIL's draft mode takes 1.2 ms and a full PIL decode 1.5 ms; all
give the same pixels. :func:`read_gray` uses OpenCV: the 0.04 ms simplejpeg would save is noise next
to the rest of a training step, and OpenCV is a core dependency (simplejpeg is not) that also reads
PNG/BMP/TIFF, so there is one code path.

Before decoding, :func:`decode_gray` reads the image size from the file header (JPEG, PNG and BMP
parsed here; other formats through PIL when it is installed) and refuses images of more than
:data:`MAX_PIXELS` pixels, so a small file that claims a huge size (a decompression bomb) never
allocates its pixels. :func:`read_gray` reads regular files only: a FIFO, a device, a dangling
symbolic link or a link loop is an :class:`ImageReadError` that says which, never a hang.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from steelfast._io import PathLike
from steelfast._validate import check_positive_int

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "ImageReadError",
    "decode_gray",
    "list_images",
    "read_gray",
    "to_model_input",
]


#: File suffixes :func:`list_images` accepts (compared case-insensitively).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})

#: Default pixel limit (height x width) of :func:`decode_gray` and :func:`read_gray`: 50 million,
#: 120 times a 256x1600 Severstal image and below an 8000x8000 decompression bomb (64 million).
MAX_PIXELS = 50_000_000

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


class ImageReadError(ValueError):
    """An image file is missing its data, truncated, corrupt or not an image."""


def _header_shape(data: bytes) -> tuple[int, int] | None:
    """(height, width) from the header of a JPEG, PNG or BMP (else through PIL), or None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if data[:2] == b"BM" and len(data) >= 26 and struct.unpack("<I", data[14:18])[0] >= 40:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(height), abs(width)
    if data[:2] == _JPEG_SOI:
        return _jpeg_shape(data)
    try:
        from PIL import Image
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's own bomb warning: the caller applies its limit
        try:
            with Image.open(io.BytesIO(data)) as img:  # reads the header only
                width, height = img.size
        except Image.DecompressionBombError:
            return (1 << 16, 1 << 16)  # PIL's hard limit is far above any sane max_pixels
        except Exception:  # noqa: BLE001 - unknown to PIL: OpenCV gets to try and to say why
            return None
    return height, width


def _jpeg_shape(data: bytes) -> tuple[int, int] | None:
    # Walk the marker segments after SOI up to the first start-of-frame (SOF0..SOF15 except the
    # DHT, JPG and DAC markers C4, C8 and CC), whose payload is precision, height, width.
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # no payload
            i += 2
            continue
        if marker == 0xDA:  # start of scan: no frame header before the image data
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return height, width
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def decode_gray(data: bytes, name: str = "<bytes>", *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, TIFF) to grayscale.

    Args:
        data: The encoded file contents.
        name: What to call the data in error messages (usually the file path).
        max_pixels: Refuse images of more pixels (height x width) than this, checked from the
            header before decoding where the format allows; None = no limit.

    Returns:
        np.ndarray: uint8 (H, W), C-contiguous.

    Raises:
        ImageReadError: ``data`` is empty, truncated, not a decodable image, or larger than
            ``max_pixels``.
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
    if max_pixels is not None:
        _check_pixels(_header_shape(data), name, max_pixels)
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if img is None or img.size == 0:
        head = bytes(data[:8]).hex()
        raise ImageReadError(
            f"cannot read image {name}: not a decodable image ({len(data)} bytes, starts with 0x{head})"
        )
    if max_pixels is not None:  # formats without a header size
        _check_pixels(img.shape[:2], name, max_pixels)
    if img.dtype != np.uint8:  # 16-bit PNG/TIFF: keep the high byte, as a viewer would
        img = (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else img.astype(np.uint8)
    return np.ascontiguousarray(img)


def _check_pixels(shape: tuple[int, int] | None, name: str, max_pixels: int) -> None:
    if shape is not None and shape[0] * shape[1] > max_pixels:
        h, w = shape
        raise ImageReadError(
            f"cannot read image {name}: {h}x{w} = {h * w} pixels, more than max_pixels={max_pixels} "
            "(raise max_pixels to read it)"
        )


#: File types that are not regular files, as :func:`read_gray` names them.
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFDIR: "a directory"}


def read_gray(path: PathLike, *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Read an image file as grayscale.

    Args:
        path: An image file (JPEG, PNG, BMP or TIFF).
        max_pixels: As in :func:`decode_gray`.

    Returns:
        np.ndarray: uint8 (H, W), C-contiguous; a Severstal image gives (256, 1600).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageReadError: the file is empty, truncated, corrupt, not an image, larger than
            ``max_pixels``, or not a regular file (a directory, FIFO, device, dangling symbolic
            link or link loop); the message names it.
    """
    p = Path(path)
    try:
        # Non-blocking, so that opening a FIFO returns at once; fstat then rejects it.
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        if p.is_symlink():
            raise ImageReadError(f"cannot read image {p}: dangling symbolic link to {os.readlink(p)}") from None
        raise FileNotFoundError(f"image not found: {p}") from None
    except IsADirectoryError:
        raise ImageReadError(f"cannot read image {p}: it is a directory") from None
    except OSError as exc:
        if p.is_symlink():  # ELOOP
            raise ImageReadError(f"cannot read image {p}: symbolic link loop ({exc.strerror})") from None
        if p.is_dir():  # Windows refuses to open a directory
            raise ImageReadError(f"cannot read image {p}: it is a directory") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = _KINDS.get(stat.S_IFMT(mode), "of an unknown kind")
        message = "it is a directory" if kind == "a directory" else f"not a regular file ({kind})"
        raise ImageReadError(f"cannot read image {p}: {message}")
    with os.fdopen(fd, "rb") as fh:
        data = fh.read()
    return decode_gray(data, str(p), max_pixels=max_pixels)


def list_images(folder: PathLike, *, regular_only: bool = True) -> list[Path]:
    """List the image files directly inside a folder.

    Args:
        folder: A directory.
        regular_only: List regular files (and links to them) only. False lists every entry with an
            image suffix that is not a directory, so that a caller can report the FIFOs, dangling
            links and link loops among them (:func:`read_gray` says what each is) instead of
            leaving them out without a word.

    Returns:
        list[Path]: Entries whose suffix is in :data:`IMAGE_SUFFIXES` (any case), sorted by name.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        NotADirectoryError: ``folder`` is a file.
    """
    d = Path(folder)
    if not d.exists():
        raise FileNotFoundError(f"image folder not found: {d}")
    if not d.is_dir():
        raise NotADirectoryError(f"expected an image folder, got a file: {d}")
    files = [p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
             and (p.is_file() if regular_only else not p.is_dir())]
    return sorted(files, key=lambda p: p.name)


def to_model_input(
    gray: np.ndarray,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    channels: int,
) -> np.ndarray:
    """Turn grey images into the float input of the model: ``(x / 255 - mean) / std``, replicated.

    Training (:class:`steelfast.data.dataset.SteelDataset`) and inference both call this, so the two can
    not drift apart.

    Args:
        gray: uint8 (H, W) or (N, H, W).
        mean: Mean in 0..1 units; a scalar, or one value per output channel.
        std: Standard deviation in 0..1 units; a scalar, or one value per output channel.
        channels: Number of output channels (1 or 3 for the shipped models).

    Returns:
        np.ndarray: float32 (N, channels, H, W), C-contiguous (N = 1 for a single image).

    Raises:
        TypeError: ``gray`` is not uint8, ``channels`` is not an int.
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
    channels = check_positive_int("channels", channels)
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
