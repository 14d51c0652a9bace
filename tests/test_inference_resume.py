"""steelfast.inference.resume: claiming an output and reading what an earlier run of it left.

segment_to_file's resume is tested end to end in test_inference_run.py; these call the module directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steelfast.inference.errors import ResumeMismatchError
from steelfast.inference.resume import claim_output, load_previous
from steelfast.inference.writer import (
    Journal,
    failures_path,
    finish_companions,
    journal_path,
    record_path,
)

IDENTITY = {"model_sha256": "ab" * 32, "backend": "torch", "thresholds": (0.5, 0.5, 0.5, 0.5), "tta": False}
RLES = ["1 3", "", "", "10 2"]


@pytest.mark.parametrize(("existing", "match"), [
    ("output", r"sub\.csv exists; pass overwrite=True .* or resume=True"),
    ("journal", r"interrupted run left its journal .*sub\.csv\.partial; pass resume=True"),
])
def test_claim_output_refuses_to_replace_unasked(tmp_path: Path, existing: str, match: str) -> None:
    out = tmp_path / "sub.csv"
    (out if existing == "output" else journal_path(out)).write_text("x\n")
    with pytest.raises(FileExistsError, match=match):
        claim_output(out, resume=False, overwrite=False)
    claim_output(out, resume=True, overwrite=False)
    claim_output(out, resume=False, overwrite=True)


def test_claim_output_resume_and_overwrite_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        claim_output(tmp_path / "sub.csv", resume=True, overwrite=True)


def test_load_previous_reads_the_journal_and_ignores_a_torn_line(tmp_path: Path) -> None:
    out = tmp_path / "sub.csv"
    with Journal(journal_path(out), IDENTITY) as journal:
        journal.add("a.jpg", RLES)
        journal.fail("b.jpg", "cannot decode")
    with open(journal_path(out), "a", encoding="utf-8") as fh:
        fh.write('{"id": "c.jpg", "rles": ["1 ')  # killed mid-line
    prev = load_previous(out, "csv", IDENTITY, resume=True, classes=4)
    assert prev.done == {"a.jpg": RLES}
    assert prev.failures == {"b.jpg": "cannot decode"}
    assert prev.journaled == [("a.jpg", RLES, None), ("b.jpg", None, "cannot decode")]


def test_load_previous_reads_a_finished_output(tmp_path: Path) -> None:
    out = tmp_path / "sub.csv"
    out.write_text("ImageId,ClassId,EncodedPixels\na.jpg,1,1 3\na.jpg,4,10 2\n")
    finish_companions(out, {"b.jpg": "cannot decode"}, IDENTITY)
    prev = load_previous(out, "csv", IDENTITY, resume=True, classes=4)
    assert prev.done == {"a.jpg": RLES} and prev.failures == {"b.jpg": "cannot decode"} and prev.journaled == []


@pytest.mark.parametrize(("key", "value", "match"), [
    ("model_sha256", "cd" * 32, "model_sha256 abababababab before, cdcdcdcdcdcd now"),
    ("thresholds", (0.4, 0.5, 0.5, 0.5), r"thresholds \[0\.5, 0\.5, 0\.5, 0\.5\] before, \[0\.4, 0\.5, 0\.5, 0\.5\] now"),
    ("tta", True, "tta false before, true now"),
])
@pytest.mark.parametrize("where", ["journal", "record"])
def test_load_previous_refuses_another_identity(tmp_path: Path, where: str, key: str, value: object, match: str) -> None:
    out = tmp_path / "sub.csv"
    if where == "journal":
        Journal(journal_path(out), IDENTITY).close()
    else:
        out.write_text("ImageId,ClassId,EncodedPixels\n")
        finish_companions(out, {}, IDENTITY)
    with pytest.raises(ResumeMismatchError, match=rf"cannot resume .*sub\.csv: it was started with .*{match}"):
        load_previous(out, "csv", {**IDENTITY, key: value}, resume=True, classes=4)


@pytest.mark.parametrize(("record", "match"), [
    (None, r"nothing records the model and options .*sub\.csv\.run\.json is missing"),
    ('{"something": 1}', r"records no model and options \(written by an older steelfast\)"),
])
def test_load_previous_refuses_an_output_it_cannot_check(tmp_path: Path, record: str | None, match: str) -> None:
    out = tmp_path / "sub.csv"
    out.write_text("ImageId,ClassId,EncodedPixels\n")
    if record is not None:
        record_path(out).write_text(record)
    with pytest.raises(ResumeMismatchError, match=match):
        load_previous(out, "csv", IDENTITY, resume=True, classes=4)


def test_load_previous_without_resume_drops_the_earlier_runs_companions(tmp_path: Path) -> None:
    out = tmp_path / "sub.csv"
    out.write_text("ImageId,ClassId,EncodedPixels\n")
    finish_companions(out, {"b.jpg": "cannot decode"}, IDENTITY)
    Journal(journal_path(out), IDENTITY).close()
    prev = load_previous(out, "csv", {**IDENTITY, "tta": True}, resume=False, classes=4)
    assert (prev.done, prev.failures, prev.journaled) == ({}, {}, [])
    assert not journal_path(out).exists() and not record_path(out).exists()
    assert failures_path(out).exists()  # replaced when the new run finishes, not before


def test_identities_compare_as_json(tmp_path: Path) -> None:
    out = tmp_path / "sub.csv"
    with Journal(journal_path(out), IDENTITY) as journal:  # thresholds given as a tuple
        journal.add("a.jpg", RLES)
    head = json.loads(journal_path(out).read_text().splitlines()[0])
    assert head == {"run": {**IDENTITY, "thresholds": [0.5, 0.5, 0.5, 0.5]}}
    as_list = {**IDENTITY, "thresholds": [0.5, 0.5, 0.5, 0.5]}
    assert load_previous(out, "csv", as_list, resume=True, classes=4).done == {"a.jpg": RLES}
