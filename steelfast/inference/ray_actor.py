"""The model stage of the Ray Data engine (:mod:`steelfast.inference.ray_engine`) on one actor.

In: a batch of ``{"bytes", "path"}`` rows (``read_binary_files(..., include_paths=True)``). Out:
submission rows, four per image, or one row per failed file. The stages are the local pipeline's
own: :func:`steelfast.images.decode_gray`, :func:`steelfast.inference.decode.fit_size` and the
:class:`~steelfast.inference.segmenter.Segmenter`. Nothing here imports Ray; Ray Data builds the
class on each actor.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

import numpy as np

from steelfast.inference.decode import fit_size

__all__ = ["SegmentActor"]


class SegmentActor:
    """The model stage on a Ray actor: built once per actor, then called once per batch.

    Args:
        model: As in :class:`~steelfast.inference.segmenter.Segmenter` (a path, reachable from every node).
        folder: The folder as the caller named it, so that failure messages name a file as the local
            pipeline does; None names files by the path Ray read.
        image_size, other_sizes, max_pixels: The run's size rules (:mod:`steelfast.inference.decode`).
        model_threads: Intra-op threads of the model on this actor (Ray starts workers with one).
        segmenter_options: Keyword arguments of :class:`~steelfast.inference.segmenter.Segmenter`.
    """

    def __init__(
        self,
        model: Any,
        folder: str | None,
        image_size: tuple[int, int] | None,
        other_sizes: str,
        max_pixels: int | None,
        model_threads: int | None,
        segmenter_options: dict[str, Any],
    ) -> None:
        from steelfast.inference.segmenter import Segmenter

        if model_threads is not None:
            import torch

            torch.set_num_threads(model_threads)
        self.segmenter = Segmenter(model, **segmenter_options)
        self.folder = folder
        self.rules = (image_size, other_sizes, max_pixels)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Segment one batch of ``{"bytes", "path"}`` rows into ``{"ImageId", "ClassId", "EncodedPixels",
        "error", "note"}`` rows: four per image (ClassId 1..4, error ""), one per failed file (ClassId 0)."""
        from steelfast.images import decode_gray

        image_size, other_sizes, max_pixels = self.rules
        seg = self.segmenter
        ids: list[str] = []
        grays: list[np.ndarray] = []
        notes: list[str] = []
        rows: dict[str, list[Any]] = {"ImageId": [], "ClassId": [], "EncodedPixels": [], "error": [], "note": []}
        for data, path in zip(batch["bytes"], batch["path"]):
            name = PurePath(str(path)).name
            shown = str(Path(self.folder) / name) if self.folder is not None else str(path)
            try:
                gray, note = fit_size(decode_gray(bytes(data), shown, max_pixels=max_pixels), image_size, other_sizes)
            except (ValueError, OSError) as exc:  # as iter_segment_folder: the file fails, the batch goes on
                for key, value in zip(rows, (name, 0, "", str(exc), "")):
                    rows[key].append(value)
                continue
            ids.append(name)
            grays.append(gray)
            notes.append(note or "")
        for image_id, note, texts in zip(ids, notes, seg.encode_batches(grays)):
            for c, text in enumerate(texts):
                for key, value in zip(rows, (image_id, c + 1, text, "", note if c == 0 else "")):
                    rows[key].append(value)
        return {key: np.array(values, dtype=np.int64 if key == "ClassId" else object) for key, values in rows.items()}
