"""The decode stage: a folder, files or arrays in, grey arrays out, with the size rules of a run.

Shared by :class:`steelfast.inference.segmenter.Segmenter`, the local folder pipeline
(:mod:`steelfast.inference.pipeline`: :func:`list_folder`, :func:`read_fitted`) and the Ray engine.

A submission holds one image size (the RLE does not carry it). :func:`fit_size` applies the rule to
a decoded grey image: an image of another size is a failure (``other_sizes="skip"``) or is resized
for the model, with a note (``"resize"``). :func:`check_sizes` checks the options once, before any
image is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from steelfast._io import PathLike

__all__ = ["OTHER_SIZES", "as_grays", "check_sizes", "fit_size", "list_folder", "read_fitted"]

#: What to do with an image that is not of the run's ``image_size``.
OTHER_SIZES = ("skip", "resize")


def check_sizes(image_size: tuple[int, int] | None, other_sizes: str, max_pixels: int | None) -> None:
    """Check the size options of a run.

    Raises:
        ValueError: ``other_sizes`` is not "skip" or "resize", ``image_size`` is not (height, width) of positive
            ints, or ``max_pixels`` is not a positive int or None; the message quotes the value.
    """
    if other_sizes not in OTHER_SIZES:
        raise ValueError(f"other_sizes must be 'skip' or 'resize', got {other_sizes!r}")
    if image_size is not None and (
        len(image_size) != 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in image_size)
    ):
        raise ValueError(f"image_size must be (height, width) of positive ints, got {image_size!r}")
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1):
        raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")


def fit_size(gray: np.ndarray, image_size: tuple[int, int] | None, other_sizes: str) -> tuple[np.ndarray, str | None]:
    """A decoded grey image at ``image_size`` (when given), and a note when it was resized.

    Raises:
        ValueError: The image is of another size and ``other_sizes`` is "skip" ("size HxW, expected HxW").
    """
    if image_size is None or gray.shape == tuple(image_size):
        return gray, None
    (h, w), (height, width) = gray.shape, image_size
    if other_sizes == "skip":
        raise ValueError(f"size {h}x{w}, expected {height}x{width}")
    shrink = h >= height and w >= width
    resized = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return resized, f"resized from {h}x{w} to {height}x{width}; its masks are in {height}x{width} coordinates"


def list_folder(folder: PathLike) -> list[Path]:
    """The image files of ``folder`` in name order, FIFOs and broken links with an image suffix
    included (:func:`steelfast.images.list_images`; reading them says what they are).

    Raises:
        FileNotFoundError: The folder does not exist.
        ValueError: The folder holds no images (the message lists the suffixes looked for).
    """
    from steelfast.images import IMAGE_SUFFIXES, list_images

    files = list_images(folder, regular_only=False)
    if not files:
        raise ValueError(f"no images in {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def read_fitted(
    path: PathLike, image_size: tuple[int, int] | None, other_sizes: str, max_pixels: int | None
) -> tuple[np.ndarray, str | None]:
    """A file's grey image at ``image_size`` (when given), and a note when it was resized.

    Raises:
        ImageReadError: The file cannot be decoded, is not a regular file or is too large (a
            ``ValueError``; :func:`steelfast.images.read_gray`).
        OSError: The file cannot be read.
        ValueError: The image is of another size and ``other_sizes`` is "skip".
    """
    from steelfast.images import read_gray

    return fit_size(read_gray(path, max_pixels=max_pixels), image_size, other_sizes)


def as_grays(images: Any) -> tuple[list[np.ndarray], list[str]]:
    """The input stage of :meth:`steelfast.inference.segmenter.Segmenter.predict`: grey arrays and their names.

    Args:
        images: uint8 (N, H, W) or (H, W) array, or a sequence of uint8 (H, W) arrays and/or image
            file paths.

    Returns:
        C-contiguous uint8 (H, W) arrays, and their names (file names for paths, else the index).

    Raises:
        TypeError: An image is not uint8.
        ValueError: An image is not 2-D or empty.
        ImageReadError: A path cannot be decoded.
    """
    from steelfast.images import read_gray

    grays: list[np.ndarray] = []
    names: list[str] = []
    items = list(images) if not isinstance(images, np.ndarray) or images.ndim == 3 else [images]
    if isinstance(images, np.ndarray) and images.ndim not in (2, 3):
        raise ValueError(f"images must be (N, H, W) or (H, W), got shape {images.shape}")
    for k, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            grays.append(read_gray(item))
            names.append(Path(item).name)
            continue
        arr = np.asarray(item)
        if arr.dtype != np.uint8:
            raise TypeError(f"image {k} must be uint8, got dtype {arr.dtype}")
        if arr.ndim != 2 or arr.size == 0:
            raise ValueError(f"image {k} must be a non-empty (H, W) array, got shape {arr.shape}")
        grays.append(np.ascontiguousarray(arr))
        names.append(str(k))
    return grays, names
