"""What an earlier run of the same output left, for ``steelfast-segment``'s resume and overwrite.

Before any image is read, :func:`claim_output` refuses to replace an earlier run's output or
journal unless asked to; :func:`load_previous` then reads what that run finished (the output and
its run record, the journal of an interrupted run; the files are described in
:mod:`steelfast.inference.writer`) and checks it against this run's identity, so one output never
mixes two models. Without a resume, it removes the earlier run's journal and run record.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from steelfast.inference.errors import ResumeMismatchError
from steelfast.inference.writer import failures_path, journal_path, plain_identity, record_path
from steelfast.severstal import SHAPE

__all__ = ["Previous", "claim_output", "load_previous"]

log = logging.getLogger(__name__)

_RESUME = "resume=True (CLI: --resume)"
_OVERWRITE = "overwrite=True (CLI: --overwrite)"


def claim_output(output: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to replace an earlier run's output or journal unless asked to.

    Raises:
        ValueError: Both ``resume`` and ``overwrite``.
        FileExistsError: ``output`` or its journal exists and neither was given.
    """
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume continues the earlier run, overwrite replaces it")
    if resume or overwrite:
        return
    if output.exists():
        raise FileExistsError(f"{output} exists; pass {_OVERWRITE} to replace it or {_RESUME} to continue it")
    journal = journal_path(output)
    if journal.exists():
        raise FileExistsError(
            f"an interrupted run left its journal {journal}; pass {_RESUME} to continue it or {_OVERWRITE} to start over"
        )


@dataclass
class Previous:
    """What an earlier run of the same output finished.

    Attributes:
        done: ``{ImageId: RLE strings}`` of finished images (from the output and the journal).
        failures: ``{ImageId: reason}`` of files that failed; a resume does not try them again.
        journaled: The journal's entries ``(ImageId, RLE strings or None, reason or None)``, carried
            into the new journal.
    """

    done: dict[str, list[str]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    journaled: list[tuple[str, list[str] | None, str | None]] = field(default_factory=list)


def _show(key: str, value: Any) -> str:
    if key == "model_sha256" and isinstance(value, str):
        return value[:12]
    return json.dumps(value)


def _check_identity(output: Path, where: Path, recorded: Any, identity: Mapping[str, Any]) -> None:
    if not isinstance(recorded, dict):
        raise ResumeMismatchError(
            f"cannot resume {output}: {where} records no model and options (written by an older steelfast); "
            f"start over with {_OVERWRITE}"
        )
    now = plain_identity(identity)
    diffs = [f"{key} {_show(key, recorded.get(key))} before, {_show(key, now.get(key))} now"
             for key in sorted(set(recorded) | set(now)) if recorded.get(key) != now.get(key)]
    if diffs:
        raise ResumeMismatchError(
            f"cannot resume {output}: it was started with another model or options ({'; '.join(diffs)}); "
            f"resume with the same ones, or start over with {_OVERWRITE}"
        )


def _read_journal(path: Path, output: Path, identity: Mapping[str, Any], classes: int) -> Previous:
    """Entries of a journal whose header matches ``identity``; a torn last line is ignored."""
    prev = Previous()
    with open(path, encoding="utf-8") as fh:
        lines = [line for line in fh if line.endswith("\n")]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            break
    if not entries:
        return prev  # killed before the header reached the disk: nothing was finished
    head = entries[0]
    _check_identity(output, path, head.get("run") if isinstance(head, dict) else None, identity)
    for entry in entries[1:]:
        if not isinstance(entry, dict) or "id" not in entry:
            continue
        image_id = str(entry["id"])
        if isinstance(entry.get("rles"), list) and len(entry["rles"]) == classes:
            prev.done[image_id] = [str(t) for t in entry["rles"]]
            prev.journaled.append((image_id, prev.done[image_id], None))
        elif isinstance(entry.get("error"), str):
            prev.failures[image_id] = entry["error"]
            prev.journaled.append((image_id, None, entry["error"]))
    return prev


def _read_output(path: Path, kind: str, shape: Sequence[int], classes: int) -> dict[str, list[str]]:
    """Rows of a finished output file as ``{ImageId: RLE strings}``, read and checked by
    :func:`steelfast.labels.read_labels` (RLE runs within ``shape``); {} if unreadable.

    ``read_labels`` knows the Kaggle classes 1..4 only: an output with another ClassId is
    unreadable (a warning, and every image runs again), so ``classes`` above 4 resumes nothing.
    """
    from steelfast.labels import read_labels

    try:
        if kind == "parquet":
            source: Any = pd.read_parquet(path)
        elif kind == "xlsx":
            source = pd.read_excel(path, dtype={"ImageId": str, "EncodedPixels": str})
        else:
            source = path
        table = read_labels(source, shape=tuple(shape))
    except (OSError, ValueError, ImportError) as exc:  # a LabelError is a ValueError
        log.warning("cannot read the existing output %s (%s); its images run again", path, exc)
        return {}
    done: dict[str, list[str]] = {}
    for image_id, group in table.groupby("ImageId", sort=False):
        by_class = dict(zip(group["ClassId"], group["EncodedPixels"]))
        done[str(image_id)] = [by_class.get(c, "") for c in range(1, classes + 1)]
    return done


def _read_failures(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        return {}
    if not {"file", "error"} <= set(table.columns):
        return {}
    return dict(zip(table["file"], table["error"]))


def load_previous(
    output: Path, kind: str, identity: Mapping[str, Any], *, resume: bool, classes: int
) -> Previous:
    """What the earlier run of ``output`` finished, checked against this run's ``identity``.

    Without ``resume`` the earlier run's journal and run record are removed and nothing is kept
    (call :func:`claim_output` first). With it, the finished output counts when its run record
    matches, and the journal's entries when its header does.

    Raises:
        ResumeMismatchError: The run record or journal was written with another identity (the
            message lists what differs), or an output exists without a run record to check.
    """
    journal, record = journal_path(output), record_path(output)
    if not resume:
        journal.unlink(missing_ok=True)
        record.unlink(missing_ok=True)
        return Previous()
    prev = Previous()
    if output.is_file() and record.is_file():
        try:
            recorded = json.loads(record.read_text(encoding="utf-8")).get("run")
        except (OSError, ValueError, AttributeError):
            recorded = None
        _check_identity(output, record, recorded, identity)
        shape = identity.get("image_size") or SHAPE
        prev.done.update(_read_output(output, kind, shape, classes))
        prev.failures.update(_read_failures(failures_path(output)))
    elif output.is_file() and not journal.is_file():
        raise ResumeMismatchError(
            f"cannot resume {output}: nothing records the model and options that wrote it ({record} "
            f"is missing); start over with {_OVERWRITE}"
        )
    # An output without a run record but with a journal is an overwrite in progress: its rows are
    # from the replaced run, so only the journal counts.
    if journal.is_file():
        logged = _read_journal(journal, output, identity, classes)
        prev.done.update(logged.done)
        prev.failures.update(logged.failures)
        prev.journaled = logged.journaled
    return prev
