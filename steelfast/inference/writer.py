"""The output side of ``steelfast-segment``: finished rows in, the submission file and its companions out.

Beside an output ``sub.csv`` a run keeps:

* ``sub.csv.lock``: held by the one run that writes ``sub.csv`` (:mod:`steelfast.inference.lock`):
  a second run on the same output fails at once, and the lock file of a killed run is taken over.
* ``sub.csv.partial``, the journal: line 1 is ``{"run": IDENTITY}``, then one JSON line per image,
  ``{"id": name, "rles": [one string per class]}`` when finished or ``{"id": name, "error":
  reason}`` when it failed. It is flushed to disk after every batch and on Ctrl-C, and removed
  once the output is written.
* ``sub.csv.run.json``: ``{"run": IDENTITY}`` of the finished output, so a later resume is checked
  against the run that wrote it.
* ``sub.csv.failures.csv``: ``file,error`` of the files that failed (no file when none did).

IDENTITY is what decides the masks: ``model_sha256`` (of the weights or ONNX file), ``backend``,
``precision``, ``tta``, ``thresholds``, ``min_areas``, ``image_size`` and ``other_sizes``. A resume
whose identity differs from the journal's or the run record's is refused with a
:class:`~steelfast.inference.errors.ResumeMismatchError` that lists what differs, so one output never
mixes two models; reading what an earlier run left, and refusing to replace it unless asked
(``overwrite``), is :mod:`steelfast.inference.resume`. :func:`check_output` finds an unknown format,
a missing writer package or an unusable path before any image is read.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from steelfast._io import atomic_path, atomic_write_bytes, naming
from steelfast.inference.lock import hold_lock

__all__ = [
    "OUTPUT_FORMATS",
    "RECORD_FORMATS",
    "Journal",
    "check_output",
    "failures_path",
    "finish",
    "finish_companions",
    "journal_path",
    "lock_output",
    "lock_path",
    "plain_identity",
    "record_path",
]

#: Output suffixes and their formats.
OUTPUT_FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".parquet": "parquet", ".jsonl": "json", ".json": "coco"}
#: The formats of defect records (:mod:`steelfast.inference.record_writer`) rather than submission rows.
RECORD_FORMATS = ("json", "coco")
#: The package each format needs beyond pandas, and the steelfast extra that installs it.
_NEEDS = {"xlsx": ("openpyxl", "excel"), "parquet": ("pyarrow", "parquet")}


def journal_path(output: Path) -> Path:
    """The journal of an unfinished run writing ``output``: ``<output>.partial``."""
    return output.with_name(output.name + ".partial")


def record_path(output: Path) -> Path:
    """The run record of a finished ``output``: ``<output>.run.json``."""
    return output.with_name(output.name + ".run.json")


def lock_path(output: Path) -> Path:
    """The lock file of ``output``: ``<output>.lock``."""
    return output.with_name(output.name + ".lock")


def failures_path(output: Path) -> Path:
    """The failures file of ``output``: ``<output>.failures.csv`` (``sub.csv.failures.csv``; outputs of
    the same stem in other formats keep their own)."""
    return output.with_name(output.name + ".failures.csv")


def check_output(output: Path, format: str | None = None) -> str:
    """Check, before any work, that ``output`` can be written, and return its format.

    Args:
        output: The submission file.
        format: ``"csv"``, ``"xlsx"``, ``"parquet"``, ``"json"`` (JSON Lines defect records) or
            ``"coco"`` (COCO defect records); default: from the suffix of ``output``.

    Returns:
        The format.

    Raises:
        IsADirectoryError: ``output`` is a folder.
        ValueError: Neither ``format`` nor the suffix names a format.
        ImportError: The format's package (openpyxl, pyarrow) is not installed.
        NotADirectoryError: A parent of ``output`` is a file.
        PermissionError: The folder that would hold ``output`` is not writable.
    """
    if output.is_dir():
        raise IsADirectoryError(f"the output {output} is a folder; give a file name such as {output / 'submission.csv'}")
    kind = format or OUTPUT_FORMATS.get(output.suffix.lower())
    if kind not in set(OUTPUT_FORMATS.values()):
        raise ValueError(
            f"unknown output format for {output}: use a .csv, .xlsx, .parquet, .jsonl (json) or .json (coco) "
            f"suffix, or format csv, xlsx, parquet, json or coco; got {format!r}"
        )
    if kind in _NEEDS:
        module, extra = _NEEDS[kind]
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"writing {kind} ({output.name}) needs {module}: pip install 'steelfast[{extra}]'")
    parent = output.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write {output}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {output}: the folder {parent} is not writable")
    return kind


# ---- one writer per output ----------------------------------------------------------------------


@contextlib.contextmanager
def lock_output(output: Path) -> Iterator[Path]:
    """Hold ``output``'s lock file (:func:`steelfast.inference.lock.hold_lock`) for the block.

    While it is held, no other run writes the output, so leftover temporary files of a killed
    run beside it (``.<name>.*.tmp``, from :func:`steelfast._io.atomic_path`) are removed.

    Raises:
        OutputBusyError: A live run holds the lock (the message names its PID).
    """
    with hold_lock(lock_path(output), output) as path:
        for companion in (output, journal_path(output), record_path(output), failures_path(output)):
            for stale in output.parent.glob(f".{glob.escape(companion.name)}.*.tmp"):
                stale.unlink(missing_ok=True)
        yield path


def plain_identity(identity: Mapping[str, Any]) -> dict[str, Any]:
    """``identity`` as it reads back from JSON (tuples become lists), the form runs are compared in."""
    return json.loads(json.dumps(dict(identity)))


# ---- writing -----------------------------------------------------------------------------------


class Journal:
    """The journal of a run (see the module docstring), flushed every ``every`` entries.

    Opening it rewrites the file as the header plus ``carried`` entries (so a torn last line of
    a killed run never merges with a new one), then appends. Leaving the ``with`` block, also by
    an exception or Ctrl-C, flushes what is pending to disk.
    """

    def __init__(
        self,
        path: Path,
        identity: Mapping[str, Any],
        carried: Sequence[tuple[str, list[str] | None, str | None]] = (),
        every: int = 1,
    ) -> None:
        self.path = path
        self.every = max(1, int(every))
        self._pending: list[str] = []
        head = json.dumps({"run": plain_identity(identity)}) + "\n"
        body = "".join(self._line(image_id, rles, error) for image_id, rles, error in carried)
        atomic_write_bytes(path, (head + body).encode("utf-8"), fsync=True)
        self._fh = open(path, "a", encoding="utf-8")

    @staticmethod
    def _line(image_id: str, rles: list[str] | None, error: str | None) -> str:
        entry = {"id": image_id, "rles": rles} if rles is not None else {"id": image_id, "error": error}
        return json.dumps(entry) + "\n"

    def add(self, image_id: str, rles: list[str]) -> None:
        """Record a finished image."""
        self._append(self._line(image_id, rles, None))

    def fail(self, image_id: str, reason: str) -> None:
        """Record a file that failed."""
        self._append(self._line(image_id, None, reason))

    def _append(self, line: str) -> None:
        self._pending.append(line)
        if len(self._pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        """Write the pending entries and force them to disk."""
        if self._pending:
            with naming(self.path):
                self._fh.write("".join(self._pending))
                self._pending.clear()
                self._fh.flush()
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Flush and close."""
        try:
            self.flush()
        finally:
            self._fh.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def finish(output: Path, kind: str, frame: pd.DataFrame, failures: Mapping[str, str], identity: Mapping[str, Any]) -> None:
    """Write the output, the failures file and the run record, then remove the journal.

    Every file is written atomically; the journal goes last, so a crash in between leaves a run
    that ``resume`` completes.
    """
    from steelfast.labels import write_submission

    write_submission(frame, output, format=kind)
    finish_companions(output, failures, identity)


def finish_companions(output: Path, failures: Mapping[str, str], identity: Mapping[str, Any]) -> None:
    """Write the failures file and the run record of a written ``output``, then remove its journal."""
    fail_path = failures_path(output)
    if failures:
        with atomic_path(fail_path) as tmp:
            pd.DataFrame({"file": list(failures), "error": list(failures.values())}).to_csv(tmp, index=False)
    else:
        fail_path.unlink(missing_ok=True)
    text = json.dumps({"run": plain_identity(identity)}, indent=1) + "\n"
    atomic_write_bytes(record_path(output), text.encode("utf-8"))
    journal_path(output).unlink(missing_ok=True)
