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
  with ``error`` set; the rest of the folder goes on.
* :func:`segment_folder` collects that into a DataFrame ``ImageId, ClassId, EncodedPixels``, four
  rows per image ("" = no defect), the competition's submission format.
* :func:`segment_to_file` (the ``steelfast-segment`` command) writes the output atomically,
  lists failures in ``<output stem>.failures.csv``, and keeps a journal
  ``<output>.partial`` of finished images, flushed after every batch, so ``resume=True`` continues
  a killed run without redoing or duplicating images.

Images of any size are padded (edge pixels repeated) to multiples of 32; the probabilities are
cropped back, so masks are encoded at the original size.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Union

import numpy as np
import pandas as pd

from steelfast._validate import per_class
from steelfast.backends import Backend, make_backend

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

PathLike = Union[str, "os.PathLike[str]"]
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
        error: Why the file failed (decode error), or None.
    """

    image_id: str
    path: Path
    encoded: list[str] | None
    error: str | None = None


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
            metadata, written by :func:`steelfast.tune.tune_on_images`), else False.
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
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            self.backend = make_backend(model if model is not None else resolve_model(None), backend, **backend_options)
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

        result: list[list[str]] = [[] for _ in shapes]
        for idx, probs in groups:
            sizes = {shapes[i] for i in idx}
            if len(sizes) == 1:
                h, w = sizes.pop()
                # A cropped view: the encoder reads any strides, nothing is copied.
                texts = encode_probs(probs[:, :, :h, :w], self.thresholds, self.min_areas, self.threads)
                for k, i in enumerate(idx):
                    result[i] = texts[k]
            else:
                for k, i in enumerate(idx):
                    h, w = shapes[i]
                    result[i] = encode_probs(probs[k : k + 1, :, :h, :w], self.thresholds, self.min_areas, self.threads)[0]
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


def _read(path: Path) -> np.ndarray:
    from steelfast.images import read_gray

    return read_gray(path)


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
        **options: More :class:`Segmenter` keyword arguments.

    Yields:
        :class:`ImageResult` per file: in file order within a batch; a failed file is yielded as
        soon as it is found.

    Raises:
        FileNotFoundError: The folder or the model does not exist.
    """
    from steelfast.images import list_images

    files = list_images(folder) if isinstance(folder, (str, os.PathLike)) else [Path(f) for f in folder]
    done = set(skip)
    files = [f for f in files if f.name not in done]
    seg = segmenter or Segmenter(model, backend, batch_size, tta, **options)
    if not files:
        return
    size = seg.batch_size
    lookahead = max(2 * size, 2 * workers)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="steelfast-decode") as decoders, \
            ThreadPoolExecutor(1, thread_name_prefix="steelfast-encode") as encoder:
        queue: collections.deque[tuple[Path, Future[np.ndarray]]] = collections.deque()
        posted: collections.deque[tuple[list[Path], Future[list[list[str]]]]] = collections.deque()
        it = iter(files)

        def refill() -> None:
            while len(queue) < lookahead:
                path = next(it, None)
                if path is None:
                    return
                queue.append((path, decoders.submit(_read, path)))

        def drain(keep: int) -> Iterator[ImageResult]:
            while len(posted) > keep:
                paths, fut = posted.popleft()
                for p, texts in zip(paths, fut.result()):
                    yield ImageResult(p.name, p, texts)

        batch: list[tuple[Path, np.ndarray]] = []
        refill()
        while queue or batch:
            if queue:
                path, fut = queue.popleft()
                refill()
                try:
                    batch.append((path, fut.result()))
                except (ValueError, OSError) as exc:  # ImageReadError is a ValueError
                    log.warning("skipping %s: %s", path.name, exc)
                    yield ImageResult(path.name, path, None, str(exc))
                if len(batch) < size and queue:
                    continue
            if not batch:
                continue
            grays = [g for _, g in batch]
            groups = seg.predict_proba(grays)  # the model runs here, on this thread
            posted.append(([p for p, _ in batch], encoder.submit(seg.encode, groups, [g.shape for g in grays])))
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
        "" = no defect): four rows per image, images in file-name order. Files that could not be
        decoded are left out and listed in ``df.attrs["failures"]`` (``{name: message}``).

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
    with tqdm(total=len(files), unit="img", disable=not progress) as bar:
        for res in iter_segment_folder(files, model, **options):
            if res.encoded is None:
                failures[res.image_id] = res.error or ""
            else:
                rows[res.image_id] = res.encoded
            bar.update(1)
    frame = _frame(((f.name, rows[f.name]) for f in files if f.name in rows))
    frame.attrs["failures"] = failures
    return frame


def _listed(folder: PathLike) -> list[Path]:
    from steelfast.images import IMAGE_SUFFIXES, list_images

    files = list_images(folder)
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
        failures: ``{file name: message}`` of files that could not be read.
        failures_file: The failures CSV, or None when there were none.
        seconds: Wall time of this call.
    """

    output: Path
    images: int
    processed: int
    resumed: int
    defects: dict[int, int]
    failures: dict[str, str] = field(default_factory=dict)
    failures_file: Path | None = None
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Images processed in this call per second of wall time."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One-line human summary."""
        per_class = ", ".join(f"class {c}: {n}" for c, n in sorted(self.defects.items()))
        resumed = f" ({self.resumed} resumed)" if self.resumed else ""
        return (
            f"{self.images} images{resumed} -> {self.output}; images with defects: {per_class}; "
            f"{self.images_per_second:.1f} images/s; {len(self.failures)} failures"
            + (f" (listed in {self.failures_file})" if self.failures_file else "")
        )


def _journal_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def _failures_path(output: Path) -> Path:
    return output.with_name(output.stem + ".failures.csv")


def _read_journal(path: Path, classes: int) -> dict[str, list[str]]:
    """Finished images of an interrupted run; a torn last line (killed mid-write) is ignored."""
    done: dict[str, list[str]] = {}
    if not path.is_file():
        return done
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break
            if isinstance(entry, dict) and isinstance(entry.get("rles"), list) and len(entry["rles"]) == classes:
                done[str(entry["id"])] = [str(t) for t in entry["rles"]]
    return done


def _read_output(path: Path, kind: str) -> dict[str, list[str]]:
    """Rows of a finished output file (new style), as {ImageId: rles}; {} if unreadable."""
    if not path.is_file():
        return {}
    try:
        if kind == "parquet":
            table = pd.read_parquet(path)
        elif kind == "xlsx":
            table = pd.read_excel(path, dtype={"ImageId": str, "EncodedPixels": str})
        else:
            table = pd.read_csv(path, dtype={"ImageId": str, "EncodedPixels": str}, keep_default_na=False)
    except (OSError, ValueError, ImportError) as exc:
        log.warning("cannot read the existing output %s (%s); starting over", path, exc)
        return {}
    if not {"ImageId", "ClassId", "EncodedPixels"} <= set(table.columns):
        return {}
    table["EncodedPixels"] = table["EncodedPixels"].fillna("").astype(str)
    done: dict[str, list[str]] = {}
    for image_id, group in table.groupby("ImageId", sort=False):
        by_class = dict(zip(group["ClassId"].astype(int), group["EncodedPixels"]))
        done[str(image_id)] = [by_class.get(c, "") for c in range(1, 5)]
    return done


def segment_to_file(
    folder: PathLike,
    output: PathLike,
    model: Any = None,
    *,
    format: str | None = None,
    resume: bool = False,
    overlays: PathLike | None = None,
    progress: bool = True,
    workers: int = 2,
    segmenter: Segmenter | None = None,
    **segmenter_options: Any,
) -> SegmentSummary:
    """Segment a folder into a submission file, robustly (the ``steelfast-segment`` command).

    Args:
        folder: Image folder.
        output: Submission file (``.csv``, ``.xlsx`` or ``.parquet``), written atomically at the
            end. A journal ``<output>.partial`` grows while running and is removed at the end.
        model: As in :class:`Segmenter`.
        format: ``"csv"``, ``"xlsx"`` or ``"parquet"`` (default: from the suffix).
        resume: Keep the images finished by an earlier run (from its journal or its output) and
            run only the rest.
        overlays: Folder for PNG overlays of the predicted masks (one per image), or None.
        progress: Show a progress bar on stderr.
        workers: Decoding threads.
        segmenter: A ready :class:`Segmenter` (then ``model`` and the options are ignored).
        **segmenter_options: Keyword arguments of :class:`Segmenter` (``backend``,
            ``batch_size``, ``tta``, ``thresholds``, ...).

    Returns:
        A :class:`SegmentSummary`.

    Raises:
        FileNotFoundError: The folder or the model does not exist.
        ValueError: The folder holds no images, or an unknown output format.
    """
    from tqdm.auto import tqdm

    from steelfast.labels import write_submission

    start = time.perf_counter()
    out = Path(output)
    kind = format or {".csv": "csv", ".xlsx": "xlsx", ".parquet": "parquet"}.get(out.suffix.lower())
    if kind not in ("csv", "xlsx", "parquet"):
        raise ValueError(f"unknown output format for {out}: use a .csv, .xlsx or .parquet suffix, got {format!r}")
    files = _listed(folder)
    if segmenter is None:
        segmenter_options.setdefault("compile", len(files) >= COMPILE_MIN_IMAGES)
    seg = segmenter or Segmenter(model, **segmenter_options)
    journal = _journal_path(out)
    done: dict[str, list[str]] = {}
    if resume:
        done = {**_read_output(out, kind), **_read_journal(journal, seg.classes)}
    resumed = sum(1 for f in files if f.name in done)
    out.parent.mkdir(parents=True, exist_ok=True)
    if overlays is not None:
        Path(overlays).mkdir(parents=True, exist_ok=True)
    failures: dict[str, str] = {}
    processed = 0
    mode = "a" if resume else "w"
    with open(journal, mode, encoding="utf-8") as log_fh, \
            tqdm(total=len(files), initial=resumed, unit="img", disable=not progress, desc="segment") as bar:
        pending: list[str] = []
        for res in iter_segment_folder(files, segmenter=seg, skip=done.keys(), workers=workers):
            if res.encoded is None:
                failures[res.image_id] = res.error or ""
            else:
                done[res.image_id] = res.encoded
                processed += 1
                pending.append(json.dumps({"id": res.image_id, "rles": res.encoded}) + "\n")
                if overlays is not None:
                    _save_overlay(Path(overlays), res)
            bar.update(1)
            if len(pending) >= seg.batch_size:
                _flush(log_fh, pending)
        _flush(log_fh, pending)
    frame = _frame((f.name, done[f.name]) for f in files if f.name in done)
    write_submission(frame, out, format=kind)
    fail_path = _failures_path(out)
    if failures:
        from steelfast._atomic import atomic_path

        with atomic_path(fail_path) as tmp:
            pd.DataFrame({"file": list(failures), "error": list(failures.values())}).to_csv(tmp, index=False)
    else:
        fail_path.unlink(missing_ok=True)
    journal.unlink(missing_ok=True)
    defects = {c + 1: int(sum(1 for f in files if f.name in done and done[f.name][c])) for c in range(seg.classes)}
    return SegmentSummary(
        output=out,
        images=len(frame) // max(1, seg.classes),
        processed=processed,
        resumed=resumed,
        defects=defects,
        failures=failures,
        failures_file=fail_path if failures else None,
        seconds=time.perf_counter() - start,
    )


def _flush(fh: Any, pending: list[str]) -> None:
    if pending:
        fh.write("".join(pending))
        fh.flush()
        os.fsync(fh.fileno())
        pending.clear()


def _save_overlay(folder: Path, res: ImageResult) -> None:
    from steelfast.images import read_gray
    from steelfast.overlay import save_overlay
    from steelfast.rle import decode

    gray = read_gray(res.path)
    masks = np.stack([decode(t, gray.shape) for t in res.encoded or []])
    save_overlay(folder / (Path(res.image_id).stem + ".png"), gray, pred=masks)
