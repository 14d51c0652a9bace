"""Segment steel images: the facade over backends, and the folder pipeline.

The flow, one stage per place::

    files --(decode threads)--> grey images --(batch, pad to /32, normalize)--> backend
          --(probabilities)--> encode_probs (threshold + min area + RLE, compiled core) --> rows

* :class:`Segmenter` holds a backend and the post-processing settings (per-class thresholds and
  minimum areas, from the checkpoint metadata unless overridden). :meth:`Segmenter.predict` turns
  images into four RLE strings each (Kaggle format: column-major, 1-based starts).
* :func:`iter_segment_folder` is the pipeline: a thread pool decodes images ahead of the model
  (bounded look-ahead), the model runs batch after batch, and a post-processing thread encodes
  the previous batch while the next one runs. It yields one :class:`ImageResult` per file, so a
  folder of any size streams in constant memory. A file that cannot be decoded becomes a result
  with ``error`` set; the rest of the folder goes on. With ``image_size`` given, an image of
  another size is such a failure (``other_sizes="skip"``) or is resized to ``image_size`` before
  the model, with a note (``"resize"``); its masks are then in ``image_size`` coordinates.
* :func:`segment_folder` collects that into a DataFrame ``ImageId, ClassId, EncodedPixels``, four
  rows per image ("" = no defect), the competition's submission format.
* :func:`segment_to_file` (the ``steelfast-segment`` command) checks the output before any work,
  holds a lock so one run writes one output, writes the output atomically, lists failures in
  ``<output stem>.failures.csv``, and keeps a journal ``<output>.partial`` of finished images,
  flushed after every batch and on Ctrl-C, so ``resume=True`` continues a killed run without
  redoing or duplicating images, and only with the same model and options
  (:mod:`steelfast.inference.writer` holds these files). A submission holds one image size,
  256x1600 for Kaggle: other sizes are failures unless ``other_sizes="resize"``.

Images of any size are padded (edge pixels repeated) to multiples of 32 (64 for a model whose
metadata says ``input.multiple``); the probabilities are cropped back, so masks are encoded at the
size the model saw.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import pandas as pd

from steelfast._io import PathLike
from steelfast._validate import per_class
from steelfast.backends import Backend, make_backend
from steelfast.export import file_sha256
from steelfast.images import MAX_PIXELS
from steelfast.inference import writer
from steelfast.inference.decode import as_grays, check_sizes, fit_size
from steelfast.severstal import SHAPE

__all__ = [
    "COMPILE_MIN_IMAGES",
    "ImageResult",
    "SegmentSummary",
    "Segmenter",
    "iter_segment_folder",
    "resolve_model",
    "segment_folder",
    "segment_to_file",
]

log = logging.getLogger(__name__)
_MULTIPLE = 32

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


def resolve_model(model: PathLike | None) -> Path:
    """The model file to use: ``model``, or the shipped default when None.

    Raises:
        FileNotFoundError: The file (or the shipped default model) does not exist; the message
            says how to pass another one.
    """
    if model is not None:
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model not found: {path} (pass a .safetensors checkpoint or an .onnx file)")
        return path
    from steelfast.checkpoint import default_checkpoint_path

    path = default_checkpoint_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"the default model {path} is missing (the package was installed without weights); "
            "pass a checkpoint with model=... (CLI: --model CKPT)"
        )
    return path


def _pad(gray: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = gray.shape
    if (h, w) == (height, width):
        return gray
    # Edge padding: a border of zeros would look like a dark defect to the model.
    return np.pad(gray, ((0, height - h), (0, width - w)), mode="edge")


def _round_up(n: int, multiple: int = _MULTIPLE) -> int:
    return -(-n // multiple) * multiple


class Segmenter:
    """A model ready to segment images.

    Args:
        model: Checkpoint path (``.safetensors``/``.json``), ONNX file (``onnxruntime``/``tensorrt``
            backends), a steelfast ``UNet``, or None for the shipped default model.
        backend: ``"auto"``, ``"torch"``, ``"onnxruntime"``, ``"tensorrt"``, or a ready
            :class:`~steelfast.backends.Backend` (then ``model`` is ignored).
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
        **backend_options: Passed to :func:`~steelfast.backends.make_backend` (``device``,
            ``compile``, ``metadata``, ``cache_dir``, ...).

    Raises:
        FileNotFoundError: The model (or the default model) does not exist.
        ValueError: A bad batch size, backend name or threshold.
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
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        source = None
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            source = model if model is not None else resolve_model(None)
            self.backend = make_backend(source, backend, **backend_options)
        self._source = Path(source) if isinstance(source, (str, os.PathLike)) else None
        meta = self.backend.metadata
        self.metadata = meta
        self.classes = len(meta.get("classes", [1, 2, 3, 4]))
        norm = meta.get("normalization", {})
        self.mean, self.std = float(norm.get("mean", 0.0)), float(norm.get("std", 1.0))
        self.channels = int(meta.get("input", {}).get("channels", 3))
        # Height and width are padded to this (64 for a network that runs at half resolution).
        self.multiple = int(meta.get("input", {}).get("multiple", _MULTIPLE))
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
            :meth:`~steelfast.backends.Backend.weights_sha256` says.
        """
        if self._source is not None:
            weights = self._source.with_suffix(".safetensors") if self._source.suffix.lower() == ".json" else self._source
            sha = file_sha256(weights)
        else:
            sha = self.backend.weights_sha256()
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
        encoded: list[list[str]] = []
        for start in range(0, len(grays), self.batch_size):
            chunk = grays[start : start + self.batch_size]
            encoded.extend(self.encode(self.predict_proba(chunk), [g.shape for g in chunk]))
        if not as_frame:
            return encoded
        ids = list(image_ids) if image_ids is not None else names
        if len(ids) != len(encoded):
            raise ValueError(f"got {len(ids)} image_ids for {len(encoded)} images")
        return _frame(zip(ids, encoded), self.classes)

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
        out: list[Any] = []
        for start in range(0, len(grays), self.batch_size):
            chunk = grays[start : start + self.batch_size]
            found = self.encode_records(self.predict_proba(chunk), [g.shape for g in chunk])
            out.extend(dataclasses.replace(r, image_id=str(ids[start + k])) for k, r in enumerate(found))
        return out


def _frame(items: Iterable[tuple[str, Sequence[str]]], classes: int = 4) -> pd.DataFrame:
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


def _read(
    path: Path, image_size: tuple[int, int] | None, other_sizes: str, max_pixels: int | None
) -> tuple[np.ndarray, str | None]:
    """The decode stage: a grey image at ``image_size`` (when given) and a note, or an error."""
    from steelfast.images import read_gray

    return fit_size(read_gray(path, max_pixels=max_pixels), image_size, other_sizes)


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
                queue.append((path, decoders.submit(_read, path, image_size, other_sizes, max_pixels)))

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
    folder: PathLike,
    model: Any = None,
    *,
    progress: bool = False,
    **options: Any,
) -> pd.DataFrame:
    """Segment every image of a folder into a submission DataFrame.

    Args:
        folder: Image folder.
        model: As in :class:`Segmenter`.
        progress: Show a progress bar.
        **options: Keyword arguments of :func:`iter_segment_folder` (``segmenter``, ``backend``,
            ``batch_size``, ``tta``, ``workers``, ``thresholds``, ``compile``, ...). Without
            ``compile``, the torch backend is compiled only for folders of at least
            :data:`COMPILE_MIN_IMAGES` images.

    Returns:
        DataFrame with columns ``ImageId`` (str), ``ClassId`` (int 1..4), ``EncodedPixels`` (str,
        "" = no defect): four rows per image, images in file-name order. Files that failed are
        left out and listed in ``df.attrs["failures"]`` (``{name: message}``); resized images are
        listed in ``df.attrs["notes"]`` (``{name: note}``).

    Raises:
        FileNotFoundError: The folder or the model does not exist.
        ValueError: The folder holds no images.
    """
    from tqdm.auto import tqdm

    files = _listed(folder)
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
    frame = _frame(((f.name, rows[f.name]) for f in files if f.name in rows))
    frame.attrs["failures"] = failures
    frame.attrs["notes"] = notes
    return frame


def _listed(folder: PathLike) -> list[Path]:
    from steelfast.images import IMAGE_SUFFIXES, list_images

    files = list_images(folder, regular_only=False)
    if not files:
        raise ValueError(f"no images in {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


@dataclass
class SegmentSummary:
    """What :func:`segment_to_file` did.

    Attributes:
        output: The submission file.
        images: Images in the output.
        processed: Images run through the model in this call.
        resumed: Images taken from an earlier, interrupted run.
        defects: Images with a defect, per ClassId.
        failures: ``{file name: reason}`` of files left out (unreadable, not a regular file, too
            large, another size), also those an earlier run of a resume found.
        failures_file: The failures CSV, or None when there were none.
        notes: ``{file name: note}`` of images written with a warning (resized).
        seconds: Wall time of this call.
    """

    output: Path
    images: int
    processed: int
    resumed: int
    defects: dict[int, int]
    failures: dict[str, str] = field(default_factory=dict)
    failures_file: Path | None = None
    notes: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Images processed in this call per second of wall time."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One-line human summary."""
        per_class = ", ".join(f"class {c}: {n}" for c, n in sorted(self.defects.items()))
        resumed = f" ({self.resumed} resumed)" if self.resumed else ""
        resized = f" ({len(self.notes)} resized)" if self.notes else ""
        return (
            f"{self.images} images{resumed}{resized} -> {self.output}; images with defects: {per_class}; "
            f"{self.images_per_second:.1f} images/s; {len(self.failures)} failures"
            + (f" (listed in {self.failures_file})" if self.failures_file else "")
        )


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
    lock and refuses to replace an earlier output unasked; see :mod:`steelfast.inference.writer`
    for the files it keeps beside the output.

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
        A :class:`SegmentSummary`.

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
    files = _listed(folder)
    if kind in writer.RECORD_FORMATS and (resume or overlays is not None):
        raise ValueError(f"a {kind} output is written in one go: resume and overlays work with csv, xlsx and "
                         f"parquet outputs only (got resume={resume!r}, overlays={overlays!r})")
    with writer.lock_output(out):
        writer.claim_output(out, resume=resume, overwrite=overwrite)
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
        prev = writer.load_previous(out, kind, identity, resume=resume, classes=seg.classes)
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
        frame = _frame((f.name, done[f.name]) for f in files if f.name in done)
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
    from steelfast.images import read_gray
    from steelfast.analysis.overlay import save_overlay
    from steelfast.rle import decode

    gray = read_gray(res.path, max_pixels=None)
    if gray.shape != tuple(image_size):  # a resized image: draw it as the model saw it
        gray = cv2.resize(gray, (image_size[1], image_size[0]), interpolation=cv2.INTER_AREA)
    masks = np.stack([decode(t, gray.shape) for t in res.encoded or []])
    save_overlay(folder / (Path(res.image_id).stem + ".png"), gray, pred=masks)
