"""Defect records to a file: records in, a JSON Lines or COCO file out.

The job of ``steelfast-segment DIR -o out.jsonl --format json`` (or ``.json``, ``coco``).

The records (:mod:`steelfast.inference.records`) come out of the same pipeline as the submission
(:func:`steelfast.inference.pipeline.iter_segment_folder` with ``records=True``) and are streamed into a
temporary file beside the output, which replaces the output only when every image is done
(:func:`steelfast._io.atomic_path`): a crash or Ctrl-C leaves no partial file. As for a
submission, the run holds the output's lock, a file that fails is reported and skipped and listed in
``<output>.failures.csv``, and ``<output>.run.json`` records the model and options. A records
output is written in one go: there is no journal, so ``resume`` is refused (rerun with
``overwrite``).

Formats (every field is described in the README, "Defect records"):

* ``json``: JSON Lines, one :meth:`ImageRecord.to_json <steelfast.inference.records.ImageRecord.to_json>`
  object per image, images in file-name order.
* ``coco``: one JSON object ``{"info", "categories", "images", "annotations"}`` that
  ``pycocotools.coco.COCO`` loads: ``images[i]`` is ``{"id": i + 1, "file_name", "height", "width",
  "presence"}`` in file-name order, ``categories`` the four Kaggle classes, and each defect one
  annotation ``{"id", "image_id", "category_id", "segmentation", "bbox", "area", "score",
  "score_max", "iscrowd": 0}``, its ``segmentation`` the uncompressed COCO RLE of
  :func:`steelfast.rle.to_coco` and ``score`` its mean probability. The ``annotations`` list alone is
  a COCO results list (``COCO.loadRes``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from steelfast._io import PathLike, atomic_path
from steelfast.inference import resume as earlier
from steelfast.inference import writer
from steelfast.inference.records import ImageRecord
from steelfast.inference.summary import SegmentSummary
from steelfast.severstal import CLASS_NAMES

__all__ = ["CocoSink", "JsonLinesSink", "records_to_file"]


class JsonLinesSink:
    """Writes one JSON line per record to an open text file."""

    def __init__(self, fh: IO[str], info: Mapping[str, Any]) -> None:
        self._fh = fh

    def add(self, record: ImageRecord) -> None:
        """Write one image's record."""
        self._fh.write(json.dumps(record.to_json()) + "\n")

    def close(self) -> None:
        """Nothing left to write."""


class CocoSink:
    """Streams COCO annotations to an open text file; the images list follows them at :meth:`close`."""

    def __init__(self, fh: IO[str], info: Mapping[str, Any]) -> None:
        self._fh = fh
        self._images: list[dict[str, Any]] = []
        self._next_annotation = 1
        categories = [{"id": c, "name": str(c), "supercategory": "defect", "description": CLASS_NAMES.get(c, "")}
                      for c in sorted(CLASS_NAMES)]
        head = json.dumps({"info": dict(info), "categories": categories})
        fh.write(head[:-1] + ', "annotations": [')

    def add(self, record: ImageRecord) -> None:
        """Add one image and its defects as annotations."""
        from steelfast.rle import to_coco

        image_id = len(self._images) + 1
        shape = (record.height, record.width)
        self._images.append({"id": image_id, "file_name": record.image_id, "height": record.height,
                             "width": record.width, "presence": list(record.presence)})
        for defect in record.defects:
            annotation = {
                "id": self._next_annotation, "image_id": image_id, "category_id": defect.class_id,
                "segmentation": to_coco(defect.rle, shape), "bbox": list(defect.bbox), "area": defect.area,
                "score": defect.score_mean, "score_max": defect.score_max, "iscrowd": 0,
            }
            self._fh.write(("" if self._next_annotation == 1 else ",") + "\n" + json.dumps(annotation))
            self._next_annotation += 1

    def close(self) -> None:
        """Close the annotations list and write the images."""
        self._fh.write('\n], "images": ' + json.dumps(self._images) + "}\n")


_SINKS = {"json": JsonLinesSink, "coco": CocoSink}


def records_to_file(
    folder: PathLike,
    output: Path,
    kind: str,
    *,
    segmenter: Any,
    files: list[Path],
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 2,
    image_size: tuple[int, int] | None = None,
    other_sizes: str = "skip",
    max_pixels: int | None = None,
) -> SegmentSummary:
    """Write the defect records of ``files`` (listed from ``folder``) to ``output``.

    Called by :func:`steelfast.inference.run.segment_to_file` for a ``json`` or ``coco`` output, after
    it checked the output and the options, under the output's lock, with the segmenter built.

    Returns:
        A :class:`steelfast.inference.summary.SegmentSummary`.

    Raises:
        KeyboardInterrupt: Nothing was written (no partial output).
    """
    from tqdm.auto import tqdm

    from steelfast.inference.pipeline import iter_segment_folder  # lazy: it loads torch

    start = time.perf_counter()
    identity = {**segmenter.identity(), "image_size": list(image_size) if image_size else None,
                "other_sizes": other_sizes, "format": kind}
    earlier.load_previous(output, kind, identity, resume=False, classes=segmenter.classes)  # drops stale companions
    failures: dict[str, str] = {}
    notes: dict[str, str] = {}
    defects = dict.fromkeys(range(1, segmenter.classes + 1), 0)
    processed = 0
    info = {"description": f"steelfast defect records of {Path(folder).name}", "run": identity}
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as fh, \
            tqdm(total=len(files), unit="img", disable=not progress, desc="segment") as bar:
        sink = _SINKS[kind](fh, info)
        for res in iter_segment_folder(files, segmenter=segmenter, workers=workers, image_size=image_size,
                                       other_sizes=other_sizes, max_pixels=max_pixels, records=True):
            if res.record is None:
                failures[res.image_id] = res.error or ""
            else:
                sink.add(res.record)
                processed += 1
                for c, text in enumerate(res.record.rles):
                    defects[c + 1] += bool(text)
            if res.note is not None:
                notes[res.image_id] = res.note
            bar.update(1)
        sink.close()
    writer.finish_companions(output, failures, identity)
    return SegmentSummary(
        output=output, images=processed, processed=processed, resumed=0, defects=defects, failures=failures,
        failures_file=writer.failures_path(output) if failures else None, notes=notes,
        seconds=time.perf_counter() - start,
    )
