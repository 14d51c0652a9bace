"""Kaggle run-length encoding (RLE) of binary masks, backed by the compiled core.

The format, exactly: a mask of H x W pixels is numbered 1..H*W **top-to-bottom, then left-to-right**
(column-major, ``order="F"``; ``order="C"`` numbers left-to-right then top-to-bottom, for row-major datasets).
Its RLE text is ``"start length start length ..."``: ASCII decimal integers separated by single spaces, each
``start`` the 1-indexed number of the first pixel of a run of defect pixels and ``length >= 1`` its pixel count.
Runs are sorted, inside ``[1, H*W]`` and do not overlap; the encoder also never emits touching runs. An empty mask
is the empty string; ``None`` and NaN (what pandas reads for an empty CSV cell) decode as empty too.
The Severstal masks are 256 x 1600 (H x W), the default ``shape``.

Example:
    >>> import numpy as np
    >>> mask = np.zeros((4, 3), np.uint8); mask[1:3, 0] = 1; mask[0, 1] = 1
    >>> encode(mask)
    '2 2 5 1'
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from steelfast._compiled import core
from steelfast._validate import (
    MAX_INT64,
    as_mask_array,
    as_postprocess,
    as_prob_array,
    as_rle_text,
    as_rle_texts,
    as_shape,
    as_threads,
)
from steelfast.severstal import SHAPE

__all__ = [
    "RLEError",
    "area",
    "failed_item",
    "area_batch",
    "decode",
    "decode_batch",
    "encode",
    "encode_batch",
    "encode_probs",
    "from_coco",
    "runs",
    "to_coco",
]

#: Raised for malformed RLE text; a subclass of ``ValueError`` whose message names the token or run.
RLEError = core.RLEError


def failed_item(error: RLEError) -> tuple[int, str] | None:
    """Which text of a batch an :data:`RLEError` is about, and why: ``(index, reason)``.

    The batch functions (:func:`decode_batch`, :func:`area_batch`, the metrics' batches) raise for
    the first malformed text with the message ``"item <index>: <reason>"``; this reads it back,
    for callers that name the row or argument the text came from. None for a message of another form.

    >>> try:
    ...     decode_batch(["1 2", "5 x"], (4, 4))
    ... except RLEError as e:
    ...     failed_item(e)
    (1, "token 1 'x' is not a non-negative integer")
    """
    head, sep, reason = str(error).partition(": ")
    kind, _, index = head.partition(" ")
    if not sep or kind != "item" or not (index.isascii() and index.isdecimal()):
        return None
    return int(index), reason


def _check_order(order: str) -> bool:
    """Return True for column-major ("F") numbering."""
    if order not in ("F", "C"):
        raise ValueError(f"order must be 'F' (Kaggle, column-major) or 'C' (row-major), got {order!r}")
    return order == "F"


def _encode_4d(masks: np.ndarray, order: str, threads: int) -> list[str]:
    # Row-major numbering of (H, W) is column-major numbering of its (W, H) transpose: a view, never a copy.
    if not _check_order(order):
        masks = masks.swapaxes(-1, -2)
    return core.encode_masks(masks, threads)


def encode(mask: Any, order: str = "F") -> str:
    """Encode one mask as Kaggle RLE text.

    Args:
        mask: (H, W) array of any bool or integer dtype and any memory order (or a torch tensor); nonzero = defect.
        order: "F" (Kaggle's column-major numbering) or "C" (row-major).

    Returns:
        The RLE text, "" for an empty mask.
    """
    array = as_mask_array(mask, "mask", (2,))
    return _encode_4d(array[None, None], order, 1)[0]


def encode_batch(masks: Any, threads: int | None = None, order: str = "F") -> list[str] | list[list[str]]:
    """Encode a batch of masks on worker threads; the output order is the input order.

    Args:
        masks: (N, H, W) or (N, C, H, W) bool or integer array.
        threads: worker threads (None = one per CPU).
        order: "F" or "C", as in :func:`encode`.

    Returns:
        ``list[str]`` of length N for 3-D input, ``list[list[str]]`` of shape N x C for 4-D input.
    """
    array = as_mask_array(masks, "masks", (3, 4))
    n_threads = as_threads(threads)
    if array.ndim == 3:
        return _encode_4d(array[:, None], order, n_threads)
    flat = _encode_4d(array, order, n_threads)
    classes = array.shape[1]
    return [flat[i * classes : (i + 1) * classes] for i in range(array.shape[0])]


def _decode_texts(texts: list[str], shape: Any, order: str, threads: int, out: Any = None) -> np.ndarray:
    height, width = as_shape(shape)
    column_major = _check_order(order)
    if out is None:
        # Runs are painted in the numbering order, so every run is one memset; column-major numbering gives a
        # Fortran-ordered (H, W) view, exactly the layout the classic numpy decoders return. A fresh zeroed array:
        # only the runs are painted, and pages without a run are never touched.
        dims = (len(texts), width, height) if column_major else (len(texts), height, width)
        nbytes = len(texts) * height * width
        if nbytes > sys.maxsize:
            raise ValueError(f"{len(texts)} masks of shape {(height, width)} are {nbytes} bytes, too many to address")
        try:
            target, zeroed = np.zeros(dims, np.uint8), True
        except MemoryError as exc:
            shown = f"{nbytes} bytes for {len(texts)} masks of shape {(height, width)}"
            raise MemoryError(f"cannot allocate {shown}") from exc
        out = target.transpose(0, 2, 1) if column_major else target
    else:
        target, zeroed = _checked_out(out, (len(texts), height, width), column_major), False
    core.decode_many(texts, target, height * width, threads, zeroed)
    return out


def _checked_out(out: Any, shape: tuple[int, int, int], column_major: bool) -> np.ndarray:
    """The C-contiguous (N, W, H) or (N, H, W) array behind ``out``, in numbering order; errors quote ``out``."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != np.uint8:
        raise TypeError(f"out must have dtype uint8, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape} (N, H, W), got {out.shape}")
    target = out.transpose(0, 2, 1) if column_major else out
    if not target.flags.c_contiguous:
        layout = "np.empty((N, W, H), np.uint8).transpose(0, 2, 1)" if column_major else "np.empty((N, H, W), np.uint8)"
        raise ValueError(f"out must be laid out as decode_batch returns it ({layout}); got strides {out.strides}")
    if not out.flags.writeable:
        raise ValueError("out is read-only (out.flags.writeable is False)")
    return target


def decode(rle: str | None, shape: tuple[int, int] = SHAPE, order: str = "F") -> np.ndarray:
    """Decode RLE text into a mask.

    Args:
        rle: RLE text; "", None and NaN give an empty mask.
        shape: (H, W) of the mask.
        order: "F" or "C", as in :func:`encode`.

    Returns:
        uint8 array (H, W), values 0/1; Fortran-ordered for ``order="F"``, C-ordered for ``order="C"``
        (``np.ascontiguousarray`` gives a C-ordered copy when a library needs one).

    Raises:
        RLEError: malformed text (odd token count, a non-integer token, start < 1, length < 1, a run past H*W,
            starts not increasing or runs overlapping); the message names the token.
    """
    return _decode_texts([as_rle_text(rle)], shape, order, 1)[0]


def decode_batch(
    rles: Iterable[str | None],
    shape: tuple[int, int] = SHAPE,
    threads: int | None = None,
    order: str = "F",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decode many RLE texts on worker threads.

    Args:
        rles: RLE texts ("", None and NaN are empty masks).
        shape: (H, W) of every mask.
        threads: worker threads (None = one per CPU).
        order: "F" or "C", as in :func:`decode`.
        out: optional uint8 array (N, H, W) to decode into, laid out as this function returns it (a previous
            result, or ``np.empty((N, W, H), np.uint8).transpose(0, 2, 1)`` for "F"; C-contiguous for "C").
            Its old contents are overwritten (every byte is written once); they are unspecified if decoding fails.
            Reusing one ``out`` across calls saves the kernel's zeroing of fresh pages on first touch, which costs
            more than decoding a large batch.

    Returns:
        uint8 array (N, H, W) (``out`` when given; otherwise a new zeroed array), each mask laid out as
        :func:`decode` lays it out. An error names the item index and the token.
    """
    return _decode_texts(as_rle_texts(rles), shape, order, as_threads(threads), out)


def area(rle: str | None, shape: tuple[int, int] = SHAPE) -> int:
    """Number of defect pixels of RLE text, from its run lengths (validated, never decoded)."""
    height, width = as_shape(shape)
    return int(core.areas_many([as_rle_text(rle)], height * width, 1)[0])


def area_batch(
    rles: Iterable[str | None], shape: tuple[int, int] = SHAPE, threads: int | None = None
) -> np.ndarray:
    """:func:`area` of many texts: int64 array (N,)."""
    height, width = as_shape(shape)
    return core.areas_many(as_rle_texts(rles), height * width, as_threads(threads))


def runs(rle: str | None, shape: tuple[int, int] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """Validated runs of RLE text: (starts, lengths), int64 arrays, starts **0-based**."""
    height, width = as_shape(shape)
    return core.rle_runs(as_rle_text(rle), height * width)


def encode_probs(
    probs: Any, thresholds: Any = 0.5, min_areas: Any = 0, threads: int | None = None
) -> list[list[str]]:
    """Threshold, filter by area and RLE-encode probabilities in one pass of the compiled core.

    A pixel of class c is a defect where ``probs[n, c] > thresholds[c]``; a class mask whose total area is below
    ``min_areas[c]`` becomes empty. No full mask is ever built in Python.

    Args:
        probs: (N, C, H, W) float32 or float16 array (any strides, e.g. channels-last) or tensor.
        thresholds: one float in [0, 1] or one per class.
        min_areas: one non-negative int or one per class (pixels).
        threads: worker threads (None = one per CPU).

    Returns:
        N lists of C RLE texts.
    """
    array = as_prob_array(probs)
    n, classes = array.shape[:2]
    limits, minimum, half_bits = as_postprocess(thresholds, min_areas, classes)
    n_threads = as_threads(threads)  # checked even when there is nothing to do
    if n == 0:
        return []
    flat = core.encode_probs(array, limits, half_bits, minimum, n_threads)
    return [flat[i * classes : (i + 1) * classes] for i in range(n)]


def to_coco(rle: str | None, shape: tuple[int, int] = SHAPE) -> dict:
    """Convert Kaggle RLE to COCO's uncompressed RLE ``{"size": [H, W], "counts": [...]}``.

    COCO numbers pixels column-major too; its counts alternate background and defect run lengths, starting with
    background (possibly 0) and covering all H*W pixels, as ``pycocotools.mask.frPyObjects`` expects.
    """
    height, width = as_shape(shape)
    starts, lengths = runs(rle, (height, width))
    ends = starts + lengths
    gaps = starts - np.concatenate(([0], ends[:-1]))
    counts = np.empty(2 * len(starts) + 1, dtype=np.int64)
    counts[0:-1:2] = gaps
    counts[1::2] = lengths
    counts[-1] = height * width - (ends[-1] if len(ends) else 0)
    if counts[-1] == 0 and len(counts) > 1:
        counts = counts[:-1]
    return {"size": [height, width], "counts": counts.tolist()}


def _coco_string_counts(text: bytes) -> list[int]:
    # COCO's compressed counts: 5-bit groups offset by 48, 0x20 = more groups follow, 0x10 in the last group = sign;
    # from the third count on, each is stored as a difference to the count two places before.
    counts: list[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(text):
                raise ValueError(f"COCO counts string ends inside a number at byte {pos}")
            group = text[pos] - 48
            if not 0 <= group < 64:
                raise ValueError(f"COCO counts string has an invalid byte {text[pos]!r} at {pos}")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            pos += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def _checked_coco_counts(counts_in: Any, source: str) -> list[int]:
    # Every count an int (never a bool, float or str) in [0, 2**63 - 1], as exact Python ints: nothing is truncated.
    if isinstance(counts_in, np.ndarray):
        if counts_in.ndim != 1 or counts_in.dtype.kind not in "iu":
            shown = f"dtype {counts_in.dtype} shape {counts_in.shape}"
            raise ValueError(f"COCO counts must be a 1-D integer array, got {shown}")
        counts_in = counts_in.tolist()
    elif not isinstance(counts_in, (list, tuple)):
        raise ValueError(f"COCO counts must be a list of integers or a compressed string, got {counts_in!r:.80}")
    counts = []
    for i, value in enumerate(counts_in):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"COCO counts[{i}]{source} must be an integer, got {type(value).__name__} {value!r:.80}")
        if not 0 <= value <= MAX_INT64:
            raise ValueError(f"COCO counts[{i}]{source} must lie in [0, 2**63 - 1], got {value}")
        counts.append(int(value))
    return counts


def from_coco(obj: dict) -> str:
    """Convert a COCO RLE (``{"size": [H, W], "counts": list | str | bytes}``) to Kaggle RLE text.

    Both the uncompressed (list or 1-D integer array) and the compressed (string) COCO forms are accepted.

    Raises:
        ValueError: missing keys; a count that is not an integer (a float, bool or str), is negative or exceeds
            2**63 - 1; or counts that do not add up to H*W. The message quotes the count and its index.
    """
    if not isinstance(obj, dict) or "size" not in obj or "counts" not in obj:
        raise ValueError(f"COCO RLE must be a dict with 'size' and 'counts', got {obj!r:.80}")
    height, width = as_shape(obj["size"], "COCO size")
    counts_in, source = obj["counts"], ""
    if isinstance(counts_in, str):
        if not counts_in.isascii():
            at = next(i for i, ch in enumerate(counts_in) if not ch.isascii())
            raise ValueError(f"COCO counts string has a non-ASCII character {counts_in[at]!r} at {at}")
        counts_in = counts_in.encode()
    if isinstance(counts_in, bytes):
        counts_in, source = _coco_string_counts(counts_in), " (decoded from the counts string)"
    checked = _checked_coco_counts(counts_in, source)
    if sum(checked) != height * width:
        raise ValueError(f"COCO counts add up to {sum(checked)} pixels, but size {height}x{width} has {height * width}")
    counts = np.array(checked, dtype=np.int64)  # every partial sum is <= H*W, which fits: no overflow below
    bounds = np.cumsum(counts)
    starts = bounds[0::2][: len(counts[1::2])]
    lengths = counts[1::2]
    keep = lengths > 0
    merged_starts: list[int] = []
    merged_lengths: list[int] = []
    for start, length in zip(starts[keep].tolist(), lengths[keep].tolist()):
        if merged_starts and merged_starts[-1] + merged_lengths[-1] == start:  # zero-length gap: one run
            merged_lengths[-1] += length
        else:
            merged_starts.append(start)
            merged_lengths.append(length)
    return " ".join(f"{s + 1} {n}" for s, n in zip(merged_starts, merged_lengths))
