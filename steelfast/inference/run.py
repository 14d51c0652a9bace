"""The ``steelfast-segment`` job: a folder in, a submission file (or defect records) and its companions out.

:func:`segment_to_file` checks the output before any work, holds a lock so one run writes one
output, writes the output atomically, lists failures in ``<output>.failures.csv``, and keeps
a journal ``<output>.partial`` of finished images, flushed after every batch and on Ctrl-C, so
``resume=True`` continues a killed run without redoing or duplicating images, and only with the
same model and options (:mod:`steelfast.inference.writer` holds these files). A submission holds
one image size, 256x1600 for Kaggle: other sizes are failures unless ``other_sizes="resize"``.
The images stream through :func:`steelfast.inference.pipeline.iter_segment_folder`; a ``.jsonl``
or ``.json`` output goes to :mod:`steelfast.inference.record_writer` instead.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from steelfast._io import PathLike
from steelfast.images import MAX_PIXELS
from steelfast.inference import resume as earlier
from steelfast.inference import writer
from steelfast.inference.decode import check_sizes, list_folder, read_fitted
from steelfast.inference.pipeline import COMPILE_MIN_IMAGES, ImageResult, iter_segment_folder
from steelfast.inference.segmenter import Segmenter, submission_frame
from steelfast.inference.summary import SegmentSummary
from steelfast.severstal import SHAPE

__all__ = ["segment_to_file"]



def segment_to_file(
    folder: PathLike,
    output: PathLike,
    model: Any = None,
    *,
    format: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    overlays: PathLike | None = None,
    progress: bool = True,
    workers: int = 2,
    image_size: tuple[int, int] = SHAPE,
    other_sizes: str = "skip",
    max_pixels: int | None = MAX_PIXELS,
    segmenter: Segmenter | None = None,
    **segmenter_options: Any,
) -> SegmentSummary:
    """Segment a folder into a submission file, robustly (the ``steelfast-segment`` command).

    Before any image is read it checks the output (format package, path), takes the output's
    lock and refuses to replace an earlier output unasked (:mod:`steelfast.inference.resume`);
    see :mod:`steelfast.inference.writer` for the files it keeps beside the output.

    Args:
        folder: Image folder.
        output: Submission file (``.csv``, ``.xlsx`` or ``.parquet``), written atomically at the
            end. A journal ``<output>.partial`` grows while running and is removed at the end.
            Defect records instead for ``.jsonl`` (JSON Lines) or ``.json`` (COCO), see
            :mod:`steelfast.inference.record_writer` (no journal: ``resume`` and ``overlays`` are
            refused for them).
        model: As in :class:`Segmenter`.
        format: ``"csv"``, ``"xlsx"``, ``"parquet"``, ``"json"`` or ``"coco"`` (default: from the
            suffix).
        resume: Keep the images finished by an earlier run of this output (from its journal or
            its output) and run only the rest; refused when that run used another model or other
            result-changing options. Files that failed in it are listed again, not retried.
        overwrite: Replace an existing output (without it, or ``resume``, an existing output or
            journal is an error).
        overlays: Folder for PNG overlays of the predicted masks (one per image), or None.
        progress: Show a progress bar on stderr.
        workers: Decoding threads.
        image_size: (height, width) of the output's images: the RLE does not carry a size, so one
            file holds one (Kaggle: 256x1600).
        other_sizes: ``"skip"``: an image of another size is a failure; ``"resize"``: it is
            resized to ``image_size`` for the model and its masks are encoded at that size.
        max_pixels: Refuse images of more pixels (checked from the header); None = no limit.
        segmenter: A ready :class:`Segmenter` (then ``model`` and the options are ignored).
        **segmenter_options: Keyword arguments of :class:`Segmenter` (``backend``,
            ``batch_size``, ``tta``, ``thresholds``, ...).

    Returns:
        A :class:`~steelfast.inference.summary.SegmentSummary`.

    Raises:
        FileNotFoundError: The folder or the model does not exist.
        FileExistsError: The output (or an interrupted run's journal) exists, and neither
            ``resume`` nor ``overwrite`` was given.
        ImportError: The output format's or the backend's package is missing.
        OSError: The output path is a folder or not writable.
        OutputBusyError: Another run is writing the same output (an ``OSError``).
        ResumeMismatchError: ``resume`` with another model or options (a ``ValueError``).
        ValueError: The folder holds no images, an unknown output format, or a bad option.
        KeyboardInterrupt: After flushing the journal; run again with ``resume=True``.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    out = Path(output)
    kind = writer.check_output(out, format)
    check_sizes(image_size, other_sizes, max_pixels)
    files = list_folder(folder)
    if kind in writer.RECORD_FORMATS and (resume or overlays is not None):
        raise ValueError(f"a {kind} output is written in one go: resume and overlays work with csv, xlsx and "
                         f"parquet outputs only (got resume={resume!r}, overlays={overlays!r})")
    with writer.lock_output(out):
        earlier.claim_output(out, resume=resume, overwrite=overwrite)
        if overlays is not None:
            Path(overlays).mkdir(parents=True, exist_ok=True)
        if segmenter is None:
            segmenter_options.setdefault("compile", len(files) >= COMPILE_MIN_IMAGES)
        seg = segmenter or Segmenter(model, **segmenter_options)
        if kind in writer.RECORD_FORMATS:
            from steelfast.inference.record_writer import records_to_file

            summary = records_to_file(folder, out, kind, segmenter=seg, files=files, overwrite=overwrite,
                                      progress=progress, workers=workers, image_size=image_size,
                                      other_sizes=other_sizes, max_pixels=max_pixels)
            return dataclasses.replace(summary, seconds=time.perf_counter() - start)
        identity = {**seg.identity(), "image_size": list(image_size), "other_sizes": other_sizes}
        prev = earlier.load_previous(out, kind, identity, resume=resume, classes=seg.classes)
        names = {f.name for f in files}
        done = {k: v for k, v in prev.done.items() if k in names}
        failures = {k: v for k, v in prev.failures.items() if k in names and k not in done}
        notes: dict[str, str] = {}
        resumed, processed = len(done), 0
        with writer.Journal(writer.journal_path(out), identity, prev.journaled, every=seg.batch_size) as journal, \
                tqdm(total=len(files), initial=resumed + len(failures), unit="img", disable=not progress,
                     desc="segment") as bar:
            for res in iter_segment_folder(files, segmenter=seg, skip=done.keys() | failures.keys(), workers=workers,
                                           image_size=image_size, other_sizes=other_sizes, max_pixels=max_pixels):
                if res.encoded is None:
                    failures[res.image_id] = res.error or ""
                    journal.fail(res.image_id, failures[res.image_id])
                else:
                    done[res.image_id] = res.encoded
                    journal.add(res.image_id, res.encoded)
                    processed += 1
                    if overlays is not None:
                        _save_overlay(Path(overlays), res, image_size)
                if res.note is not None:
                    notes[res.image_id] = res.note
                bar.update(1)
        frame = submission_frame((f.name, done[f.name]) for f in files if f.name in done)
        writer.finish(out, kind, frame, failures, identity)
    defects = {c + 1: int(sum(1 for texts in done.values() if texts[c])) for c in range(seg.classes)}
    return SegmentSummary(
        output=out,
        images=len(frame) // max(1, seg.classes),
        processed=processed,
        resumed=resumed,
        defects=defects,
        failures=failures,
        failures_file=writer.failures_path(out) if failures else None,
        notes=notes,
        seconds=time.perf_counter() - start,
    )


def _save_overlay(folder: Path, res: ImageResult, image_size: tuple[int, int]) -> None:
    from steelfast.analysis.overlay import save_overlay
    from steelfast.rle import decode

    # A resized image is drawn as the model saw it: resized by the same rule.
    gray, _ = read_fitted(res.path, image_size, "resize", None)
    masks = np.stack([decode(t, gray.shape) for t in res.encoded or []])
    save_overlay(folder / (Path(res.image_id).stem + ".png"), gray, pred=masks)
