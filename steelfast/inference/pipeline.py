"""The folder pipeline: a folder (or a list of files) in, one result per file out, streamed.

* :func:`iter_segment_folder`: a thread pool decodes images ahead of the model (bounded
  look-ahead), the model runs batch after batch on the calling thread, and a post-processing
  thread encodes the previous batch while the next one runs. It yields one :class:`ImageResult`
  per file, so a folder of any size streams in constant memory. A file that cannot be decoded
  becomes a result with ``error`` set; the rest of the folder goes on. With ``image_size`` given,
  an image of another size is such a failure (``other_sizes="skip"``) or is resized to
  ``image_size`` before the model, with a note (``"resize"``); its masks are then in
  ``image_size`` coordinates.
* :func:`segment_folder` collects that into a DataFrame ``ImageId, ClassId, EncodedPixels``, four
  rows per image ("" = no defect), the competition's submission format.

Writing a submission file robustly (lock, journal, resume) is :mod:`steelfast.inference.run`.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from steelfast._io import PathLike
from steelfast.images import MAX_PIXELS
from steelfast.inference.decode import check_sizes, list_folder, read_fitted
from steelfast.inference.segmenter import Segmenter, submission_frame

__all__ = ["COMPILE_MIN_IMAGES", "ImageResult", "iter_segment_folder", "segment_folder"]

log = logging.getLogger(__name__)

#: Folders with fewer images than this run the torch CPU backend eagerly unless ``compile`` is
#: given: ``torch.compile`` costs 2-20 s once and saves about 5 ms per 256x1600 image (42 against
#: 35 images/s on the tuning machine), so it pays off only for large folders.
COMPILE_MIN_IMAGES = 500


class ImageResult(NamedTuple):
    """One file's outcome in :func:`iter_segment_folder`.

    Attributes:
        image_id: The file name (the Kaggle ``ImageId``).
        path: The file.
        encoded: One RLE string per class ("" = no defect), or None on failure.
        error: Why the file failed (decode error, not a regular file, too large, other size), or
            None.
        note: A warning about a file that did not fail (it was resized), or None.
        record: Its :class:`~steelfast.inference.records.ImageRecord` when the pipeline ran with
            ``records=True``, else None.
    """

    image_id: str
    path: Path
    encoded: list[str] | None
    error: str | None = None
    note: str | None = None
    record: Any = None


def iter_segment_folder(
    folder: PathLike | Sequence[PathLike],
    model: Any = None,
    *,
    segmenter: Segmenter | None = None,
    backend: str = "auto",
    batch_size: int | None = None,
    tta: bool | None = None,
    workers: int = 2,
    skip: Iterable[str] = (),
    image_size: tuple[int, int] | None = None,
    other_sizes: str = "skip",
    max_pixels: int | None = MAX_PIXELS,
    records: bool = False,
    **options: Any,
) -> Iterator[ImageResult]:
    """Stream the images of a folder through the model, one result per file.

    Args:
        folder: Image folder (see :func:`steelfast.images.list_images`), or a list of files.
        model: As in :class:`Segmenter` (ignored when ``segmenter`` is given).
        segmenter: A ready :class:`Segmenter` to reuse.
        backend: As in :class:`Segmenter`.
        batch_size: As in :class:`Segmenter`.
        tta: As in :class:`Segmenter`.
        workers: Decoding threads.
        skip: File names (ImageIds) to leave out (already done).
        image_size: (height, width) every image must have, or None for any size.
        other_sizes: For an image not of ``image_size``: ``"skip"`` (a failure, "size HxW,
            expected HxW") or ``"resize"`` (resized for the model, with a note).
        max_pixels: Refuse larger images (:func:`steelfast.images.read_gray`); None = no limit.
        records: Post-process with :meth:`Segmenter.encode_records`: each result also carries its
            defect record (same RLE strings, defects from the same core pass).
        **options: More :class:`Segmenter` keyword arguments.

    Yields:
        :class:`ImageResult` per file: in file order within a batch; a failed file is yielded as
        soon as it is found. A folder's FIFOs, dangling links and link loops with an image suffix
        are failures too, saying what they are.

    Raises:
        FileNotFoundError: The folder or the model does not exist.
        ValueError: A bad ``other_sizes``, ``image_size`` or ``max_pixels``.
    """
    from steelfast.images import list_images

    check_sizes(image_size, other_sizes, max_pixels)
    files = list_images(folder, regular_only=False) if isinstance(folder, (str, os.PathLike)) else [Path(f) for f in folder]
    done = set(skip)
    files = [f for f in files if f.name not in done]
    seg = segmenter or Segmenter(model, backend, batch_size, tta, **options)
    if not files:
        return
    size = seg.batch_size
    post = seg.encode_records if records else seg.encode
    lookahead = max(2 * size, 2 * workers)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="steelfast-decode") as decoders, \
            ThreadPoolExecutor(1, thread_name_prefix="steelfast-encode") as encoder:
        queue: collections.deque[tuple[Path, Future[tuple[np.ndarray, str | None]]]] = collections.deque()
        notes: dict[Path, str] = {}
        posted: collections.deque[tuple[list[Path], Future[list[list[str]]]]] = collections.deque()
        it = iter(files)

        def refill() -> None:
            while len(queue) < lookahead:
                path = next(it, None)
                if path is None:
                    return
                queue.append((path, decoders.submit(read_fitted, path, image_size, other_sizes, max_pixels)))

        def drain(keep: int) -> Iterator[ImageResult]:
            while len(posted) > keep:
                paths, fut = posted.popleft()
                for p, out in zip(paths, fut.result()):
                    note = notes.pop(p, None)
                    if records:
                        record = dataclasses.replace(out, image_id=p.name, note=note)
                        yield ImageResult(p.name, p, list(out.rles), note=note, record=record)
                    else:
                        yield ImageResult(p.name, p, out, note=note)

        batch: list[tuple[Path, np.ndarray]] = []
        refill()
        while queue or batch:
            if queue:
                path, fut = queue.popleft()
                refill()
                try:
                    gray, note = fut.result()
                    batch.append((path, gray))
                    if note is not None:
                        log.warning("%s: %s", path.name, note)
                        notes[path] = note
                except (ValueError, OSError) as exc:  # ImageReadError is a ValueError
                    log.warning("skipping %s: %s", path.name, exc)
                    yield ImageResult(path.name, path, None, str(exc))
                if len(batch) < size and queue:
                    continue
            if not batch:
                continue
            grays = [g for _, g in batch]
            groups = seg.predict_proba(grays)  # the model runs here, on this thread
            posted.append(([p for p, _ in batch], encoder.submit(post, groups, [g.shape for g in grays])))
            batch = []
            # Keep one batch in post-processing while the next one runs through the model.
            yield from drain(1)
        yield from drain(0)


def segment_folder(
    folder: PathLike | Iterable[PathLike],
    model: Any = None,
    *,
    progress: bool = False,
    **options: Any,
) -> pd.DataFrame:
    """Segment every image of a folder into a submission DataFrame.

    Args:
        folder: Image folder, or image files (a list or any iterable; rows in its order).
        model: As in :class:`Segmenter`.
        progress: Show a progress bar.
        **options: Keyword arguments of :func:`iter_segment_folder` (``segmenter``, ``backend``,
            ``batch_size``, ``tta``, ``workers``, ``thresholds``, ``compile``, ...). Without
            ``compile``, the torch backend is compiled only for folders of at least
            :data:`COMPILE_MIN_IMAGES` images.

    Returns:
        DataFrame with columns ``ImageId`` (str), ``ClassId`` (int 1..4), ``EncodedPixels`` (str,
        "" = no defect): four rows per image, images in file-name order (a list's own order). Files that failed are
        left out and listed in ``df.attrs["failures"]`` (``{name: message}``); resized images are
        listed in ``df.attrs["notes"]`` (``{name: note}``).

    Raises:
        FileNotFoundError: The folder or the model does not exist.
        ValueError: The folder holds no images, or the list is empty or holds two files of one name.
        TypeError: ``folder`` is neither a path nor a list of paths.
    """
    from tqdm.auto import tqdm

    if isinstance(folder, (str, os.PathLike)):
        files = list_folder(folder)
    elif isinstance(folder, Iterable) and not isinstance(folder, (bytes, bytearray)):
        files = [Path(f) for f in folder]
        if not files:
            raise ValueError("no image files given (an empty list)")
        counts = collections.Counter(f.name for f in files)
        twice = next((n for n, k in counts.items() if k > 1), None)
        if twice is not None:  # the rows are keyed by file name (the ImageId)
            raise ValueError(f"two files are named {twice!r}: {[str(f) for f in files if f.name == twice][:2]}")
    else:
        raise TypeError(f"folder must be a path or a list of image paths, got {type(folder).__name__} {folder!r:.60}")
    if "segmenter" not in options:
        options.setdefault("compile", len(files) >= COMPILE_MIN_IMAGES)
    rows: dict[str, list[str]] = {}
    failures: dict[str, str] = {}
    notes: dict[str, str] = {}
    with tqdm(total=len(files), unit="img", disable=not progress) as bar:
        for res in iter_segment_folder(files, model, **options):
            if res.encoded is None:
                failures[res.image_id] = res.error or ""
            else:
                rows[res.image_id] = res.encoded
            if res.note is not None:
                notes[res.image_id] = res.note
            bar.update(1)
    frame = submission_frame(((f.name, rows[f.name]) for f in files if f.name in rows))
    frame.attrs["failures"] = failures
    frame.attrs["notes"] = notes
    return frame
