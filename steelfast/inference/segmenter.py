"""The model stage: grey images in, per-class RLE strings (or defect records) out.

The flow of one batch::

    grey images --(group by padded size, pad to the model's multiple, normalize)--> backend
          --(probabilities, cropped back)--> encode_probs (threshold + min area + RLE, compiled core)

:class:`Segmenter` holds a backend (:mod:`steelfast.inference.backends`) and the post-processing
settings (per-class thresholds and minimum areas, from the checkpoint metadata unless
overridden). :meth:`Segmenter.predict` turns images into four RLE strings each (Kaggle format:
column-major, 1-based starts), :meth:`Segmenter.predict_records` into defect records
(:mod:`steelfast.inference.records`); :func:`submission_frame` lays RLE strings out as a
submission. The folder pipeline around it is :mod:`steelfast.inference.pipeline`.

Images of any size are padded (edge pixels repeated) to multiples of 32 (64 for a model whose
metadata says ``input.multiple``); the probabilities are cropped back, so masks are encoded at the
size the model saw.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steelfast._validate import check_positive_int, per_class
from steelfast.inference.backends import make_backend
from steelfast.inference.backends.base import Backend
from steelfast.inference.decode import as_grays
from steelfast.inference.onnx_file import INPUT_MULTIPLE
from steelfast.model_files import bundled_name, model_file_sha256, resolve_model
from steelfast.severstal import CLASSES

__all__ = ["Segmenter", "submission_frame"]


def _pad(gray: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = gray.shape
    if (h, w) == (height, width):
        return gray
    # Edge padding: a border of zeros would look like a dark defect to the model.
    return np.pad(gray, ((0, height - h), (0, width - w)), mode="edge")


def _round_up(n: int, multiple: int = INPUT_MULTIPLE) -> int:
    return -(-n // multiple) * multiple


class Segmenter:
    """A model ready to segment images.

    Args:
        model: Checkpoint path (``.safetensors``/``.json``), ONNX file (``onnxruntime``/``tensorrt``
            backends), a steelfast ``UNet``, the name of a bundled model (``"synthetic-unet"``:
            :data:`steelfast.model_files.BUNDLED_MODELS`), or None for the shipped default model.
        backend: ``"auto"``, ``"torch"``, ``"onnxruntime"``, ``"tensorrt"``, or a ready
            :class:`~steelfast.inference.backends.base.Backend` (then ``model`` is ignored).
        batch_size: Images per forward pass (default: the backend's preferred size: 1 on the
            CPU, 8 on a GPU).
        tta: Average the probabilities of the image and its horizontal and vertical flips
            (three forward passes). None (the default) follows the checkpoint: True when its
            post-processing was tuned on flip-averaged probabilities (``postprocess.tta`` in the
            metadata, written by :func:`steelfast.training.tune.tune_on_images`), else False.
        thresholds: Per-class probability thresholds (one float or one per class); default from
            the checkpoint metadata.
        min_areas: Per-class minimum areas in pixels; default from the checkpoint metadata.
        threads: Threads of the compiled encoder (default 1: the model uses the cores).
        **backend_options: Passed to :func:`~steelfast.inference.backends.make_backend` (``device``,
            ``compile``, ``metadata``, ``cache_dir``, ...).

    Raises:
        FileNotFoundError: The model (or the default model) does not exist.
        TypeError: A batch size that is not an int.
        ValueError: A batch size < 1, a bad backend name or threshold.
    """

    def __init__(
        self,
        model: Any = None,
        backend: str | Backend = "auto",
        batch_size: int | None = None,
        tta: bool | None = None,
        *,
        thresholds: float | Sequence[float] | None = None,
        min_areas: int | Sequence[int] | None = None,
        threads: int = 1,
        **backend_options: Any,
    ) -> None:
        if batch_size is not None:
            batch_size = check_positive_int("batch_size", batch_size)
        source = None
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            source = bundled_name(model) if model is not None else resolve_model(None)
            self.backend = make_backend(source, backend, **backend_options)
        self._source = Path(source) if isinstance(source, (str, os.PathLike)) else None
        meta = self.backend.metadata
        self.metadata = meta
        self.classes = len(meta.get("classes", CLASSES))
        norm = meta.get("normalization", {})
        self.mean, self.std = float(norm.get("mean", 0.0)), float(norm.get("std", 1.0))
        self.channels = int(meta.get("input", {}).get("channels", 3))
        # Height and width are padded to this (64 for a network that runs at half resolution).
        self.multiple = int(meta.get("input", {}).get("multiple", INPUT_MULTIPLE))
        post = meta.get("postprocess", {})
        self.thresholds = per_class(thresholds if thresholds is not None else post.get("thresholds", 0.5), self.classes, "thresholds", float)
        self.min_areas = per_class(min_areas if min_areas is not None else post.get("min_areas", 0), self.classes, "min_areas", int)
        if any(not 0.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError(f"thresholds must lie in [0, 1], got {thresholds!r}")
        if any(a < 0 for a in self.min_areas):
            raise ValueError(f"min_areas must be >= 0, got {min_areas!r}")
        self.batch_size = batch_size or self.backend.preferred_batch_size
        self.tta = bool(post.get("tta", False)) if tta is None else bool(tta)
        self.threads = threads

    def __repr__(self) -> str:
        return f"Segmenter(backend={self.backend!r}, batch_size={self.batch_size}, tta={self.tta})"

    def identity(self) -> dict[str, Any]:
        """The model and the options that decide the masks, as recorded by a resumable run.

        Returns:
            JSON-ready ``{"model_sha256", "backend", "precision", "tta", "thresholds",
            "min_areas"}``. ``model_sha256`` is the SHA-256 of the weights file (``.safetensors``)
            or ONNX file the segmenter was built from; for a ready backend, what
            :meth:`~steelfast.inference.backends.base.Backend.weights_sha256` says.
        """
        sha = model_file_sha256(self._source) if self._source is not None else self.backend.weights_sha256()
        return {
            "model_sha256": sha,
            "backend": self.backend.name,
            "precision": self.backend.precision,
            "tta": self.tta,
            "thresholds": [float(t) for t in self.thresholds],
            "min_areas": [int(a) for a in self.min_areas],
        }

    # -- stages -----------------------------------------------------------------------------

    def predict_proba(self, grays: Sequence[np.ndarray]) -> list[tuple[list[int], np.ndarray]]:
        """Run the model on one batch of grey images (any sizes).

        Args:
            grays: uint8 (H, W) arrays.

        Returns:
            Groups ``(indices into grays, probabilities float32|float16 (n, classes, Hp, Wp))``,
            one per padded size; image ``i`` of a group is ``probs[k, :, :H_i, :W_i]``.
        """
        groups: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
        for i, g in enumerate(grays):
            groups[(_round_up(g.shape[0], self.multiple), _round_up(g.shape[1], self.multiple))].append(i)
        out = []
        from steelfast.images import to_model_input

        for (hp, wp), idx in groups.items():
            batch = np.stack([_pad(grays[i], hp, wp) for i in idx])
            x = to_model_input(batch, self.mean, self.std, self.channels)
            probs = self.backend.predict_proba(x)
            if self.tta:
                # Flip, predict, flip back; average in float32.
                acc = probs.astype(np.float32)
                for axis in (3, 2):
                    flipped = np.ascontiguousarray(np.flip(x, axis))
                    acc += np.flip(self.backend.predict_proba(flipped), axis)
                probs = acc / 3.0
            out.append((idx, probs))
        return out

    def encode(self, groups: list[tuple[list[int], np.ndarray]], shapes: Sequence[tuple[int, int]]) -> list[list[str]]:
        """Post-process and RLE-encode :meth:`predict_proba` output at the original sizes.

        Args:
            groups: Output of :meth:`predict_proba`.
            shapes: (H, W) of each original image.

        Returns:
            One list of ``classes`` RLE strings per image, in input order.
        """
        from steelfast.rle import encode_probs

        return self._post(groups, shapes, lambda p: encode_probs(p, self.thresholds, self.min_areas, self.threads))

    def encode_records(self, groups: list[tuple[list[int], np.ndarray]], shapes: Sequence[tuple[int, int]]) -> list:
        """Like :meth:`encode`, but one :class:`~steelfast.inference.records.ImageRecord` per image (its defects,
        found in the same core pass as the RLE; ``image_id`` is the index in the batch)."""
        from steelfast.inference.records import encode_records

        return self._post(groups, shapes, lambda p: encode_records(p, self.thresholds, self.min_areas, self.threads))

    @staticmethod
    def _post(groups: list[tuple[list[int], np.ndarray]], shapes: Sequence[tuple[int, int]], post: Any) -> list:
        result: list[Any] = [None] * len(shapes)
        for idx, probs in groups:
            sizes = {shapes[i] for i in idx}
            if len(sizes) == 1:
                h, w = sizes.pop()
                # A cropped view: the encoder reads any strides, nothing is copied.
                for i, out in zip(idx, post(probs[:, :, :h, :w])):
                    result[i] = out
            else:
                for k, i in enumerate(idx):
                    h, w = shapes[i]
                    result[i] = post(probs[k : k + 1, :, :h, :w])[0]
        return result

    def encode_batches(self, grays: Sequence[np.ndarray], *, records: bool = False) -> list:
        """Run the model and the encoder over grey images, :attr:`batch_size` images at a time.

        Args:
            grays: uint8 (H, W) arrays (any sizes).
            records: Encode with :meth:`encode_records` instead of :meth:`encode`.

        Returns:
            One list of ``classes`` RLE strings (or one record, ``image_id`` its index in its
            batch) per image, in input order.
        """
        post = self.encode_records if records else self.encode
        out: list[Any] = []
        for start in range(0, len(grays), self.batch_size):
            chunk = grays[start : start + self.batch_size]
            out.extend(post(self.predict_proba(chunk), [g.shape for g in chunk]))
        return out

    # -- public -----------------------------------------------------------------------------

    def predict(
        self,
        images: Any,
        *,
        image_ids: Sequence[str] | None = None,
        as_frame: bool = False,
    ) -> list[list[str]] | pd.DataFrame:
        """Segment images.

        Args:
            images: uint8 (N, H, W) array, or a sequence of uint8 (H, W) arrays and/or image
                file paths (sizes may differ).
            image_ids: Names for the DataFrame (default: file names for paths, else
                ``"0", "1", ...``).
            as_frame: Return a DataFrame ``ImageId, ClassId, EncodedPixels`` (4 rows per image)
                instead of lists.

        Returns:
            One list of 4 RLE strings per image ("" = no defect), or the DataFrame.

        Raises:
            TypeError: An image is not uint8 or not an array/path.
            ValueError: An image is not 2-D or empty.
            ImageReadError: A path cannot be decoded.
        """
        grays, names = as_grays(images)
        encoded = self.encode_batches(grays)
        if not as_frame:
            return encoded
        ids = list(image_ids) if image_ids is not None else names
        if len(ids) != len(encoded):
            raise ValueError(f"got {len(ids)} image_ids for {len(encoded)} images")
        return submission_frame(zip(ids, encoded))

    def predict_records(self, images: Any, *, image_ids: Sequence[str] | None = None) -> list:
        """Segment images into defect records (:mod:`steelfast.inference.records`).

        Args:
            images: As in :meth:`predict`.
            image_ids: Names of the records (default: file names for paths, else ``"0", "1", ...``).

        Returns:
            One :class:`~steelfast.inference.records.ImageRecord` per image; its ``rles`` are what
            :meth:`predict` returns.

        Raises:
            As :meth:`predict`.
        """
        grays, names = as_grays(images)
        ids = list(image_ids) if image_ids is not None else names
        if len(ids) != len(grays):
            raise ValueError(f"got {len(ids)} image_ids for {len(grays)} images")
        return [dataclasses.replace(r, image_id=str(i)) for i, r in zip(ids, self.encode_batches(grays, records=True))]


def submission_frame(items: Iterable[tuple[str, Sequence[str]]]) -> pd.DataFrame:
    """Submission rows from ``(ImageId, RLE strings in class order)`` pairs.

    Returns:
        DataFrame ``ImageId`` (str), ``ClassId`` (int64, 1 for the first string), ``EncodedPixels``
        (str, "" = no defect): one row per (image, class), in the given order.
    """
    ids, cls, rles = [], [], []
    for image_id, texts in items:
        for c, text in enumerate(texts):
            ids.append(image_id)
            cls.append(c + 1)
            rles.append(text)
    return pd.DataFrame(
        {"ImageId": pd.Series(ids, dtype=object), "ClassId": pd.Series(cls, dtype="int64"),
         "EncodedPixels": pd.Series(rles, dtype=object)}
    )
