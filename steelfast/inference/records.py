"""Defect records: probabilities in, one record per image out: its defects, beside the Kaggle RLE.

A **defect** is one connected component of a class mask after post-processing (the class's probability
threshold, then its minimum area, which applies to the whole class mask as in the submission: a class mask
under its minimum area is empty and has no defects). Pixels touching by an edge or a corner belong to the same
defect (8-connectivity, OpenCV's default). The compiled core finds the components in the same pass that encodes
the RLE (:func:`encode_records`): the runs of each column are joined to the touching runs of the column before
(``csrc/components.cpp``), and the probabilities are read back at the defect pixels only.

Per defect: ``class_id``, ``bbox`` ``[x, y, width, height]`` (x = column, y = row, pixels, inclusive of the
first pixel), ``area`` (pixels), ``score_mean`` and ``score_max`` (mean and largest probability over its pixels)
and ``rle`` (its own pixels, Kaggle RLE: the class mask is the union of its defects' masks).

Per image: ``height``, ``width``, ``presence`` (one score per class) and the class RLE strings of the submission.
``presence[c]`` is the largest probability of the class map. The shipped gated model folds its image-level gate
into the network's output (a class map the gate rejects is 0 everywhere), so for it ``presence`` is 0 for a
rejected class and otherwise the peak pixel probability: the gate's own probability never leaves the network, and
``presence`` does not pretend to be it. A model without a gate has the same definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from steelfast._compiled import core
from steelfast._validate import as_postprocess, as_prob_array, as_threads

__all__ = ["Defect", "ImageRecord", "encode_records"]


@dataclass(frozen=True)
class Defect:
    """One defect: an 8-connected component of a post-processed class mask.

    Attributes:
        class_id: Kaggle ClassId (1-based).
        bbox: ``(x, y, width, height)`` in pixels; x is the column, y the row of the top-left pixel.
        area: Pixels.
        score_mean: Mean probability over its pixels.
        score_max: Largest probability over its pixels.
        rle: Its pixels as Kaggle RLE (column-major, 1-based), at the image's size.
    """

    class_id: int
    bbox: tuple[int, int, int, int]
    area: int
    score_mean: float
    score_max: float
    rle: str

    def to_json(self) -> dict[str, Any]:
        """The defect as a JSON-ready dict (the README's record fields)."""
        return {"class_id": self.class_id, "bbox": list(self.bbox), "area": self.area,
                "score_mean": self.score_mean, "score_max": self.score_max, "rle": self.rle}


@dataclass(frozen=True)
class ImageRecord:
    """The defects of one image.

    Attributes:
        image_id: The file name (or the name given to an array).
        height: Rows of the masks (the image's, or ``image_size`` for a resized image).
        width: Columns of the masks.
        presence: One score per class: the largest probability of the class map (0 where a gated model
            rejected the class; see the module docstring).
        rles: The class masks as Kaggle RLE, one per class ("" = none): the submission's rows.
        defects: The defects, class by class, each class's in the column-major order of their first pixel.
        note: A warning about the image (it was resized), or None.
    """

    image_id: str
    height: int
    width: int
    presence: tuple[float, ...]
    rles: tuple[str, ...]
    defects: tuple[Defect, ...] = field(default_factory=tuple)
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict: one line of the ``json`` output (the README's record fields)."""
        return {
            "image_id": self.image_id,
            "height": self.height,
            "width": self.width,
            "presence": {str(c + 1): p for c, p in enumerate(self.presence)},
            "defects": [d.to_json() for d in self.defects],
            "note": self.note,
        }


def encode_records(
    probs: Any,
    thresholds: Any = 0.5,
    min_areas: Any = 0,
    threads: int | None = None,
    *,
    image_ids: Sequence[str] | None = None,
) -> list[ImageRecord]:
    """Threshold, filter by area, RLE-encode and find the defects of probabilities, in one core pass.

    The same arguments as :func:`steelfast.rle.encode_probs`, whose RLE strings each record's ``rles`` equal.

    Args:
        probs: (N, C, H, W) float32 or float16 array (any strides) or tensor.
        thresholds: One float in [0, 1] or one per class.
        min_areas: One non-negative int or one per class (pixels, of the whole class mask).
        threads: Worker threads of the core (None = one per CPU).
        image_ids: One name per image (default ``"0", "1", ...``).

    Returns:
        One :class:`ImageRecord` per image.

    Raises:
        TypeError: ``probs`` is not float32/float16, or a value is not a number.
        ValueError: A bad shape, threshold, minimum area or thread count, or the wrong number of ``image_ids``.
    """
    array = as_prob_array(probs)
    n, classes, height, width = array.shape
    limits, minimum, half_bits = as_postprocess(thresholds, min_areas, classes)
    n_threads = as_threads(threads)
    ids = [str(i) for i in range(n)] if image_ids is None else [str(i) for i in image_ids]
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} image_ids for {n} images")
    if n == 0:
        return []
    rles, presence, counts, boxes, scores, texts = core.encode_probs_records(
        array, limits, half_bits, minimum, n_threads
    )
    boxes = boxes.reshape(-1, 5).tolist()
    scores = scores.reshape(-1, 2).tolist()
    presence = presence.astype(np.float64).tolist()
    counts = counts.tolist()
    out, k = [], 0
    for i in range(n):
        defects = []
        for c in range(classes):
            for _ in range(counts[i * classes + c]):
                x, y, w, h, area = boxes[k]
                defects.append(Defect(c + 1, (x, y, w, h), area, scores[k][0], scores[k][1], texts[k]))
                k += 1
        planes = slice(i * classes, (i + 1) * classes)
        out.append(ImageRecord(ids[i], height, width, tuple(presence[planes]), tuple(rles[planes]), tuple(defects)))
    return out
