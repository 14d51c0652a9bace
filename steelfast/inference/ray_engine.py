"""Ray Data engine: a folder, paths or a Ray Dataset in, submission rows or a submission file out.

The same submission as :func:`steelfast.inference.pipeline.segment_folder`, on a Ray cluster.

The flow is Ray Data's documented batch-inference idiom::

    read_binary_files(paths, include_paths=True)            files -> (bytes, path) rows
      .map_batches(SegmentActor, compute=ActorPoolStrategy(size=concurrency), batch_size=..., num_gpus=...)
          decode (steelfast.images.decode_gray) -> size rule (steelfast.inference.decode.fit_size)
          -> Segmenter.predict_proba -> Segmenter.encode          one row per (image, class), or per failed file
    driver: failures and notes split off, rows sorted by ImageId, ClassId

:class:`~steelfast.inference.ray_actor.SegmentActor` is a callable class, so Ray builds one
:class:`~steelfast.inference.segmenter.Segmenter` (model and backend) per actor and reuses it for
every batch; the stages are the Segmenter's own, nothing is reimplemented. A file fails exactly as
in the local pipeline: the same decode, the same size rule, the same messages (naming the file as
listed from the folder); a folder's FIFOs and dangling links, which Ray cannot read, are found on
the driver with :func:`steelfast.images.read_gray`'s message before Ray starts.

The rows are gathered on the driver (four short strings per image) and sorted there, so the result
is deterministic. It equals the local engine's when each actor runs the same computation: the same
forward batch (``batch_size``) and the same model threads (the defaults with ``concurrency=1`` on
the machine that runs the local engine). Torch's CPU kernels may round differently with another
thread count: with ``concurrency=2`` and one thread per actor, 1 pixel of 800 masks moved across
the threshold on 200 real JPEGs. A distributed sort costs seconds of fixed overhead on
a small folder; the driver's sort is cheap until tens of millions of images.

Ray is optional (``pip install 'steelfast[ray]'``) and imported only here, on first use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from steelfast._io import PathLike
from steelfast._validate import check_positive_int
from steelfast.images import MAX_PIXELS
from steelfast.inference.decode import check_sizes, list_folder
from steelfast.inference.ray_actor import SegmentActor
from steelfast.severstal import CLASSES, SHAPE

__all__ = ["ACTOR_BATCH", "RAY_FORMATS", "RaySegmentation", "SegmentActor", "check_ray_output", "import_ray",
           "segment_with_ray"]

log = logging.getLogger(__name__)

#: The output formats the Ray engine writes (a submission; defect records are the local engine's).
RAY_FORMATS = ("csv", "parquet")
#: CPUs a read task reserves. Reading a file's bytes costs next to nothing; with the default of one
#: CPU, actors that hold every CPU of the cluster (``concurrency * num_cpus`` = all) leave no CPU for
#: the reads and the job hangs.
READ_CPUS = 0.0
#: Images per actor call when ``batch_size`` is not given: enough to amortize a call, few enough to
#: spread a small folder over several actors.
ACTOR_BATCH = 16


def import_ray() -> Any:
    """Import Ray and Ray Data, or say how to install them.

    Raises:
        ImportError: Ray Data is not installed; the message names the extra.
    """
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is a separate part of the ray package
    except ImportError as exc:
        raise ImportError(f"the Ray engine needs Ray Data: pip install 'steelfast[ray]' ({exc})") from None
    return ray


@dataclass
class RaySegmentation:
    """What :func:`segment_with_ray` returns without an ``output``.

    Attributes:
        rows: Ray Dataset of the submission rows ``ImageId, ClassId, EncodedPixels``, four per image,
            sorted by ImageId then ClassId (materialized).
        failures: ``{file name: reason}`` of files left out, as the local pipeline reports them.
        notes: ``{file name: note}`` of resized images.
        seconds: Wall time of the call.
    """

    rows: Any
    failures: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_pandas(self) -> pd.DataFrame:
        """The rows as :func:`steelfast.inference.pipeline.segment_folder` returns them (failures and notes in ``attrs``)."""
        frame = _typed(_gather(self.rows, ["ImageId", "ClassId", "EncodedPixels"]))
        frame.attrs["failures"] = dict(self.failures)
        frame.attrs["notes"] = dict(self.notes)
        return frame


def _gather(dataset: Any, columns: Sequence[str]) -> pd.DataFrame:
    """A dataset's ``columns`` on the driver, block by block as NumPy batches (in block order)."""
    parts = [pd.DataFrame({k: list(batch[k]) for k in columns})
             for batch in dataset.iter_batches(batch_size=None, batch_format="numpy") if len(batch[columns[0]])]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({k: [] for k in columns})


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    return pd.DataFrame({
        "ImageId": pd.Series(frame["ImageId"].astype(str).tolist(), dtype=object),
        "ClassId": pd.Series(frame["ClassId"], dtype="int64"),
        "EncodedPixels": pd.Series(frame["EncodedPixels"].astype(str).tolist(), dtype=object),
    })


def check_ray_output(output: PathLike, format: str | None = None, *, overwrite: bool = False) -> str:
    """Check, before Ray starts, that the Ray engine can write ``output``; return its format.

    Raises:
        ValueError: A format other than csv or parquet (or none).
        FileExistsError: ``output`` (or an interrupted run's journal) exists and ``overwrite`` is False.
        OSError: As :func:`steelfast.inference.writer.check_output`.
    """
    from steelfast.inference import resume as earlier
    from steelfast.inference import writer

    out = Path(output)
    kind = writer.check_output(out, format)
    if kind not in RAY_FORMATS:
        raise ValueError(f"the Ray engine writes csv or parquet submissions, got format {kind!r} for {out}")
    earlier.claim_output(out, resume=False, overwrite=overwrite)
    return kind


@contextlib.contextmanager
def _execution_lines(context: Any, shown: bool) -> Iterator[None]:
    """Ray Data's progress bars and execution-start lines on (as they were) or off, for the executions
    run meanwhile with ``context``. A derived dataset shares its parent's DataContext, which may be
    the caller's dataset's, so the two fields are put back afterwards."""
    saved = context.enable_progress_bars, context.print_on_execution_start
    if not shown:
        context.enable_progress_bars = context.print_on_execution_start = False
    try:
        yield
    finally:
        context.enable_progress_bars, context.print_on_execution_start = saved


def _inputs(ray: Any, paths_or_dataset: Any, actor_batch: int, concurrency: int, progress: bool = True
            ) -> tuple[Any, str | None, int | None, dict[str, str]]:
    """(dataset of bytes and paths, the folder as named, number of files, failures found before Ray)."""
    from steelfast.images import read_gray

    if isinstance(paths_or_dataset, ray.data.Dataset):
        with _execution_lines(paths_or_dataset.context, progress):  # columns() may run the dataset
            columns = set(paths_or_dataset.columns() or [])
        if not {"bytes", "path"} <= columns:
            raise ValueError(
                "a dataset must have 'bytes' and 'path' columns, as read_binary_files(paths, include_paths=True) "
                f"gives; got columns {sorted(columns)}"
            )
        return paths_or_dataset, None, None, {}
    if isinstance(paths_or_dataset, (str, os.PathLike)):
        folder: str | None = os.fspath(paths_or_dataset)
        files = list_folder(paths_or_dataset)
    elif isinstance(paths_or_dataset, Sequence) and all(isinstance(p, (str, os.PathLike)) for p in paths_or_dataset):
        folder, files = None, [Path(p) for p in paths_or_dataset]
        if not files:
            raise ValueError("no image paths given")
    else:
        raise TypeError(
            "paths_or_dataset must be a folder, a list of image paths or a Ray Dataset from "
            f"read_binary_files(..., include_paths=True); got {type(paths_or_dataset).__name__}"
        )
    failures: dict[str, str] = {}
    readable: list[str] = []
    for f in files:
        if f.is_file():
            readable.append(os.path.abspath(f))  # not resolved: a link keeps its own name
            continue
        try:  # missing, a FIFO, a device, a dangling link or a link loop: say what it is, as read_gray does
            read_gray(f)
        except (ValueError, OSError) as exc:
            failures[f.name] = str(exc)
    if not readable:
        return None, folder, len(files), failures
    # One block per actor call, read by at most as many tasks at once as there are actors: reading is
    # cheap next to the model, and every concurrent task holds a worker process.
    blocks = -(-len(readable) // actor_batch)
    dataset = ray.data.read_binary_files(
        readable, include_paths=True, num_cpus=READ_CPUS, concurrency=min(blocks, max(2, concurrency)),
        override_num_blocks=blocks,
    )
    return dataset, folder, len(files), failures


def segment_with_ray(
    paths_or_dataset: Any,
    model: Any = None,
    *,
    batch_size: int | None = None,
    concurrency: int = 1,
    num_gpus: float = 0,
    num_cpus: float = 1,
    model_threads: int | None = None,
    output: PathLike | None = None,
    format: str | None = None,
    overwrite: bool = False,
    image_size: tuple[int, int] | None = SHAPE,
    other_sizes: str = "skip",
    max_pixels: int | None = MAX_PIXELS,
    ray_address: str | None = None,
    progress: bool = True,
    **segmenter_options: Any,
) -> Any:
    """Segment images on Ray Data into the submission rows, or into a submission file.

    Args:
        paths_or_dataset: An image folder, a list of image paths, or a Ray Dataset with ``bytes`` and
            ``path`` columns (``ray.data.read_binary_files(paths, include_paths=True)``).
        model: As in :class:`~steelfast.inference.segmenter.Segmenter` (None: the shipped model); a path every
            node can read.
        batch_size: Images per forward pass, and per actor call (``map_batches(batch_size=...)``).
            None: the backend's preferred forward batch (1 on a CPU, 8 on a GPU) and
            :data:`ACTOR_BATCH` images per call. The local path's ``batch_size`` has the same
            meaning.
        concurrency: Actors, each with its own Segmenter (``ActorPoolStrategy(size=concurrency)``).
        num_gpus: GPUs per actor (then the backend runs on the GPU).
        num_cpus: CPUs Ray reserves per actor.
        model_threads: The model's intra-op threads per actor (Ray starts workers with one);
            default: without GPUs, the driver's torch thread count (what the local engine uses)
            divided by ``concurrency``.
        output: Write the rows to this ``.csv`` or ``.parquet`` file (atomically, under the output's
            lock, with ``<output>.failures.csv`` and ``<output>.run.json`` as ``steelfast-segment``
            does) instead of returning them.
        format: ``"csv"`` or ``"parquet"`` (default: from the suffix of ``output``).
        overwrite: Replace an existing ``output``.
        image_size, other_sizes, max_pixels: As in :func:`steelfast.inference.pipeline.iter_segment_folder`.
        ray_address: Connect to this cluster (``ray.init(address=...)``) when Ray is not running
            yet; None starts a local runtime (which stays up for the returned dataset).
        progress: Ray Data's progress bars (logged lines where stdout is not a terminal) and its
            execution-start lines; False turns them off for this run's execution only (they are
            put back on the dataset's ``DataContext`` after it), not for the process.
        **segmenter_options: More :class:`~steelfast.inference.segmenter.Segmenter` keyword arguments
            (``backend``, ``tta``, ``thresholds``, ``min_areas``, ``compile``, ...).

    Returns:
        Without ``output``, a :class:`RaySegmentation` (rows, failures, notes); with it, a
        :class:`steelfast.inference.summary.SegmentSummary`.

    Raises:
        ImportError: Ray Data is not installed.
        TypeError: ``paths_or_dataset`` is none of the above.
        ValueError: A bad option, an output format other than csv or parquet, no images, or a
            dataset without ``bytes`` and ``path`` columns.
        FileNotFoundError: The folder, a listed path or the model does not exist.
        FileExistsError: ``output`` exists and ``overwrite`` was not given.
        OutputBusyError: Another run is writing ``output``.
    """
    start = time.perf_counter()
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
        segmenter_options["batch_size"] = batch_size
    check_positive_int("concurrency", concurrency)
    if model_threads is not None:
        check_positive_int("model_threads", model_threads)
    for name, value in (("num_gpus", num_gpus), ("num_cpus", num_cpus)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    check_sizes(image_size, other_sizes, max_pixels)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {progress!r}")
    from steelfast.inference import resume as earlier
    from steelfast.inference import writer
    from steelfast.model_files import resolve_model

    out = Path(output) if output is not None else None
    kind = check_ray_output(out, format, overwrite=overwrite) if out is not None else None
    model_path = resolve_model(model) if model is None or isinstance(model, (str, os.PathLike)) else model
    ray = import_ray()
    with contextlib.ExitStack() as stack:
        if out is not None:  # one run per output, from before any work until the files are written
            stack.enter_context(writer.lock_output(out))
            earlier.claim_output(out, resume=False, overwrite=overwrite)
        if not ray.is_initialized():
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
        frame, failures, notes = _run(ray, paths_or_dataset, model_path, batch_size or ACTOR_BATCH, concurrency,
                                      num_gpus, num_cpus, model_threads, (image_size, other_sizes, max_pixels),
                                      segmenter_options, progress)
        if out is None:
            return RaySegmentation(ray.data.from_pandas(frame), failures, notes, time.perf_counter() - start)
        identity = _identity(model_path, segmenter_options, image_size, other_sizes)
        earlier.load_previous(out, kind, identity, resume=False, classes=len(CLASSES))  # drops stale companions
        writer.finish(out, kind, frame, failures, identity)
    from steelfast.inference.summary import SegmentSummary

    texts = frame["EncodedPixels"] != ""
    images = len(frame) // len(CLASSES)
    return SegmentSummary(
        output=out, images=images, processed=images, resumed=0,
        defects={c: int((texts & (frame["ClassId"] == c)).sum()) for c in CLASSES},
        failures=failures, failures_file=writer.failures_path(out) if failures else None, notes=notes,
        seconds=time.perf_counter() - start,
    )


def _run(ray: Any, paths_or_dataset: Any, model: Any, actor_batch: int, concurrency: int, num_gpus: float,
         num_cpus: float, model_threads: int | None, rules: tuple, segmenter_options: dict[str, Any],
         progress: bool = True) -> tuple[pd.DataFrame, dict[str, str], dict[str, str]]:
    """The Ray pipeline, then the driver's split and sort: (rows, failures, notes), each in ImageId order."""
    from steelfast.inference.pipeline import COMPILE_MIN_IMAGES

    dataset, folder, count, failures = _inputs(ray, paths_or_dataset, actor_batch, concurrency, progress)
    options = dict(segmenter_options)
    options.setdefault("compile", count is not None and count >= COMPILE_MIN_IMAGES)  # as segment_folder decides
    if model_threads is None and not num_gpus:  # the local engine's threads, shared by this machine's actors
        import torch

        model_threads = max(1, torch.get_num_threads() // concurrency)
    columns = ["ImageId", "ClassId", "EncodedPixels"]
    frame = pd.DataFrame({c: pd.Series([], dtype="int64" if c == "ClassId" else object) for c in columns})
    notes: dict[str, str] = {}
    if dataset is not None:
        image_size, other_sizes, max_pixels = rules
        mapped = dataset.map_batches(
            SegmentActor,
            fn_constructor_kwargs={
                "model": model, "folder": folder, "image_size": image_size, "other_sizes": other_sizes,
                "max_pixels": max_pixels, "model_threads": model_threads, "segmenter_options": options,
            },
            batch_size=actor_batch,
            compute=ray.data.ActorPoolStrategy(size=concurrency),
            num_gpus=num_gpus,
            num_cpus=num_cpus,
            batch_format="numpy",
        )
        with _execution_lines(mapped.context, progress):
            table = _gather(mapped, [*columns, "error", "note"])
        bad = table["ClassId"] == 0
        failures.update(zip(table.loc[bad, "ImageId"].astype(str), table.loc[bad, "error"].astype(str)))
        noted = table["note"].astype(str) != ""
        notes = dict(sorted(zip(table.loc[noted, "ImageId"].astype(str), table.loc[noted, "note"].astype(str))))
        frame = _typed(table.loc[~bad, columns].sort_values(["ImageId", "ClassId"], kind="stable"))
    failures = dict(sorted(failures.items()))
    for name, error in failures.items():
        log.warning("skipping %s: %s", name, error)
    return frame, failures, notes


def _identity(model: Any, segmenter_options: dict[str, Any], image_size: Any, other_sizes: str) -> dict[str, Any]:
    """What decides the rows, for the run record: the model file's SHA-256 and the result-changing options."""
    from steelfast.model_files import model_file_sha256

    sha = model_file_sha256(model) if isinstance(model, (str, os.PathLike)) else None
    chosen = {k: segmenter_options[k] for k in ("backend", "tta", "thresholds", "min_areas") if k in segmenter_options}
    return {"engine": "ray", "model_sha256": sha, **chosen, "image_size": list(image_size) if image_size else None,
            "other_sizes": other_sizes}
