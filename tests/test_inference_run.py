"""segment_to_file (steelfast.inference.run): failures, atomic output, resume, lock, checks before the work."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import pandas as pd
import pytest
from segment_helpers import (
    MIN_AREAS,
    SIZE,
    THRESHOLDS,
    images,
    make_folder,
    oracle,
    tiny_unet,
    torch_backend,
)

import steelfast.images
from steelfast import rle
from steelfast.checkpoint import save_checkpoint
from steelfast.inference.backends.torch_backend import TorchBackend
from steelfast.inference.errors import OutputBusyError, ResumeMismatchError
from steelfast.inference.run import segment_to_file
from steelfast.inference.segmenter import Segmenter


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".xlsx"])
def test_segment_to_file_writes_output_and_failures(backend: TorchBackend, folder: Path, tmp_path: Path, suffix: str) -> None:
    needs = {".parquet": "pyarrow", ".xlsx": "openpyxl"}
    if suffix in needs:
        pytest.importorskip(needs[suffix], reason=f"writing {suffix} needs {needs[suffix]}")
    out = tmp_path / "out" / f"sub{suffix}"
    summary = segment_to_file(folder, out, segmenter=Segmenter(backend=backend, batch_size=2), progress=False,
                              image_size=SIZE)
    assert summary.images == 5 and summary.processed == 5 and summary.resumed == 0
    assert set(summary.failures) == {"img03.jpg", "img05.jpg"}
    failures = pd.read_csv(summary.failures_file)
    assert sorted(failures["file"]) == ["img03.jpg", "img05.jpg"]
    table = pd.read_csv(out, keep_default_na=False) if suffix == ".csv" else (
        pd.read_parquet(out) if suffix == ".parquet" else pd.read_excel(out).fillna(""))
    assert len(table) == 20 and list(table.columns) == ["ImageId", "ClassId", "EncodedPixels"]
    assert not (out.parent / f"sub{suffix}.partial").exists()
    assert "5 images" in summary.line() and "2 failures" in summary.line()


def test_outputs_of_one_stem_keep_their_own_failures(backend: TorchBackend, folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="writing .parquet needs pyarrow")
    first = segment_to_file(folder, tmp_path / "sub.csv", segmenter=Segmenter(backend=backend), progress=False,
                            image_size=SIZE)
    (folder / "img03.jpg").unlink()  # the second run has one failure fewer
    second = segment_to_file(folder, tmp_path / "sub.parquet", segmenter=Segmenter(backend=backend), progress=False,
                             image_size=SIZE)
    assert first.failures_file == tmp_path / "sub.csv.failures.csv"
    assert second.failures_file == tmp_path / "sub.parquet.failures.csv"
    assert sorted(pd.read_csv(first.failures_file)["file"]) == ["img03.jpg", "img05.jpg"]  # not replaced
    assert sorted(pd.read_csv(second.failures_file)["file"]) == ["img05.jpg"]


def test_resume_after_an_interruption(backend: TorchBackend, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean = tmp_path / "clean.csv"
    segment_to_file(folder, clean, segmenter=Segmenter(backend=backend, batch_size=2), progress=False, image_size=SIZE)

    out = tmp_path / "sub.csv"
    seg = Segmenter(backend=backend, batch_size=2)
    real = Segmenter.predict_proba
    calls = {"n": 0}

    def crash_after_two(self: Segmenter, grays: list) -> list:
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt("simulated kill")
        return real(self, grays)

    monkeypatch.setattr(Segmenter, "predict_proba", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        segment_to_file(folder, out, segmenter=seg, progress=False, image_size=SIZE)
    monkeypatch.setattr(Segmenter, "predict_proba", real)
    assert not out.exists()  # the output is only ever written whole
    journal = tmp_path / "sub.csv.partial"
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert lines[0]["run"] == {**seg.identity(), "image_size": list(SIZE), "other_sizes": "skip"}
    done_before = [entry["id"] for entry in lines[1:] if "rles" in entry]
    assert 2 <= len(done_before) <= 4
    with open(journal, "a") as fh:
        fh.write('{"id": "img06.jpg", "rles": ["1 ')  # a torn line from a kill mid-write

    summary = segment_to_file(folder, out, segmenter=seg, progress=False, resume=True, image_size=SIZE)
    assert summary.resumed == len(done_before)
    assert summary.processed == 5 - len(done_before)
    assert set(summary.failures) == {"img03.jpg", "img05.jpg"}
    assert out.read_text() == clean.read_text()  # same rows, no duplicates

    again = segment_to_file(folder, out, segmenter=seg, progress=False, resume=True, image_size=SIZE)
    assert again.processed == 0 and again.resumed == 5
    assert out.read_text() == clean.read_text()


def test_overlays_are_written(backend: TorchBackend, folder: Path, tmp_path: Path) -> None:
    segment_to_file(folder, tmp_path / "s.csv", segmenter=Segmenter(backend=backend, batch_size=4),
                    progress=False, overlays=tmp_path / "ov", image_size=SIZE)
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == [f"img{i:02d}.png" for i in (0, 1, 2, 4, 6)]


# ---- one run, one model: resume, lock, overwrite ------------------------------------------------


def interrupt_after(monkeypatch: pytest.MonkeyPatch, calls: int):
    """Make the model raise KeyboardInterrupt (a Ctrl-C) after ``calls`` batches; returns the real method."""
    real = Segmenter.predict_proba
    count = {"n": 0}

    def run(self: Segmenter, grays: list) -> list:
        count["n"] += 1
        if count["n"] > calls:
            raise KeyboardInterrupt("simulated Ctrl-C")
        return real(self, grays)

    monkeypatch.setattr(Segmenter, "predict_proba", run)
    return real


@pytest.mark.parametrize("earlier", ["interrupted", "finished"])
@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"backend": "other weights"}, r"model_sha256 [0-9a-f]{12} before, [0-9a-f]{12} now"),
        ({"backend": "bf16"}, r'precision "fp32" before, "bf16" now'),
        ({"tta": True}, r"tta false before, true now"),
        ({"thresholds": 0.3}, r"thresholds \[0.5, 0.45, 0.55, 0.5\] before, \[0.3, 0.3, 0.3, 0.3\] now"),
        ({"min_areas": 0}, r"min_areas \[0, 20, 0, 50\] before, \[0, 0, 0, 0\] now"),
        ({"other_sizes": "resize"}, r'other_sizes "skip" before, "resize" now'),
    ],
)
def test_resume_refuses_another_model_or_options(
    backend: TorchBackend, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    earlier: str, change: dict, match: str,
) -> None:
    out = tmp_path / "sub.csv"
    first = Segmenter(backend=backend, batch_size=2)
    if earlier == "interrupted":
        real = interrupt_after(monkeypatch, 2)
        with pytest.raises(KeyboardInterrupt):
            segment_to_file(folder, out, segmenter=first, progress=False, image_size=SIZE)
        monkeypatch.setattr(Segmenter, "predict_proba", real)
    else:
        segment_to_file(folder, out, segmenter=first, progress=False, image_size=SIZE)
    left = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    backends = {"other weights": torch_backend(seed=1), "bf16": torch_backend(precision="bf16")}
    options = {k: v for k, v in change.items() if k in ("tta", "thresholds", "min_areas")}
    other = Segmenter(backend=backends.get(change.get("backend"), backend), batch_size=2, **options)
    sizes = {"other_sizes": change["other_sizes"]} if "other_sizes" in change else {}
    with pytest.raises(ResumeMismatchError, match=rf"cannot resume .*sub\.csv: it was started with .*{match}.*--overwrite"):
        segment_to_file(folder, out, segmenter=other, progress=False, image_size=SIZE, resume=True, **sizes)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == left  # nothing touched

    summary = segment_to_file(folder, out, segmenter=first, progress=False, image_size=SIZE, resume=True)
    assert summary.images == 5 and summary.processed + summary.resumed == 5


def test_resume_records_the_checkpoint_file_hash(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    other = save_checkpoint(tmp_path / "other.safetensors", tiny_unet(1),
                            {"postprocess": {"thresholds": THRESHOLDS, "min_areas": MIN_AREAS}})
    out = tmp_path / "sub.csv"
    segment_to_file(folder, out, checkpoint, backend="torch", compile=False, progress=False, image_size=SIZE)
    record = json.loads((tmp_path / "sub.csv.run.json").read_text())["run"]
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert record["model_sha256"] == sha and record["backend"] == "torch"
    other_sha = hashlib.sha256(other.read_bytes()).hexdigest()
    with pytest.raises(ResumeMismatchError, match=f"model_sha256 {sha[:12]} before, {other_sha[:12]} now"):
        segment_to_file(folder, out, other, backend="torch", compile=False, progress=False, image_size=SIZE, resume=True)


def test_resume_without_a_record_of_the_output_is_refused(backend: TorchBackend, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub.csv"
    out.write_text("ImageId,ClassId,EncodedPixels\nimg00.jpg,1,1 5\n")  # written by something else
    with pytest.raises(ResumeMismatchError, match=r"nothing records the model and options .*sub\.csv\.run\.json"):
        segment_to_file(folder, out, segmenter=Segmenter(backend=backend), progress=False, image_size=SIZE, resume=True)


@pytest.mark.parametrize(
    ("leftover", "match"),
    [
        ("sub.csv", r"sub\.csv exists; pass overwrite=True \(CLI: --overwrite\) to replace it or resume=True"),
        ("sub.csv.partial", r"an interrupted run left its journal .*sub\.csv\.partial; pass resume=True"),
    ],
)
def test_an_existing_output_needs_overwrite_or_resume(
    backend: TorchBackend, folder: Path, tmp_path: Path, leftover: str, match: str
) -> None:
    out = tmp_path / "sub.csv"
    (tmp_path / leftover).write_text("precious\n")
    options = {"segmenter": Segmenter(backend=backend, batch_size=2), "progress": False, "image_size": SIZE}
    with pytest.raises(FileExistsError, match=match):
        segment_to_file(folder, out, **options)
    assert (tmp_path / leftover).read_text() == "precious\n"
    summary = segment_to_file(folder, out, overwrite=True, **options)
    assert summary.images == 5 and summary.resumed == 0
    assert len(pd.read_csv(out)) == 20 and not (tmp_path / "sub.csv.partial").exists()


def test_resume_and_overwrite_exclude_each_other(backend: TorchBackend, folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        segment_to_file(folder, tmp_path / "s.csv", segmenter=Segmenter(backend=backend), resume=True, overwrite=True)


def test_a_second_run_on_the_same_output_fails_at_once_and_a_killed_runs_lock_is_taken_over(
    backend: TorchBackend, folder: Path, tmp_path: Path
) -> None:
    pytest.importorskip("fcntl", reason="the lock holder below uses flock")
    out, lock = tmp_path / "sub.csv", tmp_path / "sub.csv.lock"
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d\\n' % os.getpid()); print('locked', flush=True); "
            "time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.perf_counter()
        with pytest.raises(OutputBusyError, match=rf"another run \(pid {holder.pid}\) is writing .*sub\.csv; wait"):
            segment_to_file(folder, out, segmenter=Segmenter(backend=backend), progress=False, image_size=SIZE)
        assert time.perf_counter() - start < 10  # no waiting for the lock
        assert not out.exists() and not (tmp_path / "sub.csv.partial").exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert lock.exists()  # the killed run's lock file stays behind ...
    summary = segment_to_file(folder, out, segmenter=Segmenter(backend=backend), progress=False, image_size=SIZE)
    assert summary.images == 5 and not lock.exists()  # ... is taken over, and removed at the end


@pytest.mark.parametrize("content", [b"", b"999999999\n", b"not a pid"])
def test_a_stale_lock_file_is_taken_over(backend: TorchBackend, folder: Path, tmp_path: Path, content: bytes) -> None:
    (tmp_path / "sub.csv.lock").write_bytes(content)
    summary = segment_to_file(folder, tmp_path / "sub.csv", segmenter=Segmenter(backend=backend), progress=False,
                              image_size=SIZE)
    assert summary.images == 5 and not (tmp_path / "sub.csv.lock").exists()


# ---- checks before the work ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem", "error", "match"),
    [
        ("sub.xlsx", "no openpyxl", ImportError, r"writing xlsx \(sub\.xlsx\) needs openpyxl: pip install 'steelfast\[excel\]'"),
        ("sub.parquet", "no pyarrow", ImportError, r"writing parquet \(sub\.parquet\) needs pyarrow"),
        ("sub.csv", "no onnxruntime", ImportError, r"the onnxruntime backend needs onnxruntime and onnx"),
        ("sub.csv", "no tensorrt", ImportError, r"the tensorrt backend needs the tensorrt package"),
        ("sub.csv", "output is a folder", IsADirectoryError, r"the output .*sub\.csv is a folder"),
        ("blocker/sub.csv", "parent is a file", NotADirectoryError, r"cannot write .*sub\.csv: .*blocker is a file"),
        ("sub.csv", "folder not writable", PermissionError, r"cannot write .*sub\.csv: the folder .* is not writable"),
    ],
)
def test_problems_are_found_before_any_image_is_read(
    checkpoint: Path, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    name: str, problem: str, error: type, match: str,
) -> None:
    real_find_spec = importlib.util.find_spec
    missing = {"no openpyxl": "openpyxl", "no pyarrow": "pyarrow", "no onnxruntime": "onnxruntime", "no tensorrt": "tensorrt"}
    if problem in missing:
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda mod, *a: None if mod == missing[problem] else real_find_spec(mod, *a))
    backend = {"no onnxruntime": "onnxruntime", "no tensorrt": "tensorrt"}.get(problem, "torch")
    out = tmp_path / name
    if problem == "output is a folder":
        out.mkdir()
    if problem == "parent is a file":
        (tmp_path / "blocker").write_text("a file")
    if problem == "folder not writable":
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != tmp_path and real_access(p, mode, **kw))
    read: list = []
    monkeypatch.setattr(steelfast.images, "read_gray", lambda *a, **k: read.append(a))
    with pytest.raises(error, match=match):
        segment_to_file(folder, out, checkpoint, backend=backend, compile=False, progress=False, image_size=SIZE)
    assert read == []
    made = {"output is a folder": {"sub.csv"}, "parent is a file": {"blocker"}}.get(problem, set())
    assert {p.name for p in tmp_path.iterdir()} == {"imgs"} | made  # no output, journal or lock file


# ---- per-image failures, sizes ------------------------------------------------------------------


def png_header(height: int, width: int) -> bytes:
    """A PNG that claims height x width pixels and holds no pixel data (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def make_bad(folder: Path, kind: str) -> str:
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(folder / "bad.jpg")
    elif kind == "dangling link":
        (folder / "bad.jpg").symlink_to(folder / "nowhere.jpg")
    elif kind == "link loop":
        (folder / "bad.jpg").symlink_to(folder / "bad.jpg")
    else:
        (folder / "bad.jpg").write_bytes(png_header(8000, 8000))
    return "bad.jpg"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("fifo", r"bad\.jpg: not a regular file \(a FIFO\)"),
        ("dangling link", r"bad\.jpg: dangling symbolic link to .*nowhere\.jpg"),
        ("link loop", r"bad\.jpg: symbolic link loop"),
        ("bomb", r"bad\.jpg: 8000x8000 = 64000000 pixels, more than max_pixels=50000000"),
    ],
)
def test_a_bad_file_is_reported_by_name_and_the_rest_is_written(
    backend: TorchBackend, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, reason: str
) -> None:
    name = make_bad(folder, kind)
    out = tmp_path / "sub.csv"
    seg = Segmenter(backend=backend, batch_size=2)
    summary = segment_to_file(folder, out, segmenter=seg, progress=False, image_size=SIZE)
    assert summary.images == 5
    assert set(summary.failures) == {"img03.jpg", "img05.jpg", name}
    assert re.search(reason, summary.failures[name])
    assert "3 failures" in summary.line()
    listed = pd.read_csv(summary.failures_file, keep_default_na=False)
    assert re.search(reason, dict(zip(listed["file"], listed["error"]))[name])

    read: list = []
    monkeypatch.setattr(steelfast.images, "read_gray", lambda *a, **k: read.append(a))
    again = segment_to_file(folder, out, segmenter=seg, progress=False, image_size=SIZE, resume=True)
    assert read == [] and again.processed == 0 and again.resumed == 5  # failures are not tried again ...
    assert again.failures == summary.failures  # ... but listed again


@pytest.mark.parametrize(("max_pixels", "fails"), [(64 * 128 - 1, True), (64 * 128, False), (None, False)])
def test_max_pixels_is_checked_from_the_header(
    backend: TorchBackend, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_pixels, fails: bool
) -> None:
    decoded: list = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    summary = segment_to_file(folder, tmp_path / "s.csv", segmenter=Segmenter(backend=backend), progress=False,
                              image_size=SIZE, max_pixels=max_pixels)
    assert summary.images == (0 if fails else 5)
    if fails:
        assert summary.failures["img00.jpg"].endswith("64x128 = 8192 pixels, more than max_pixels=8191 (raise max_pixels to read it)")
        assert len(decoded) == 1  # only the file without a valid header reached the decoder
    else:
        assert set(summary.failures) == {"img03.jpg", "img05.jpg"}


@pytest.mark.parametrize("other_sizes", ["skip", "resize"])
def test_an_image_of_another_size_is_skipped_or_resized(
    backend: TorchBackend, folder: Path, tmp_path: Path, other_sizes: str
) -> None:
    big = images(1, 96, 256, seed=3)[0]
    cv2.imwrite(str(folder / "big.png"), big)
    out = tmp_path / "sub.csv"
    summary = segment_to_file(folder, out, segmenter=Segmenter(backend=backend, batch_size=2), progress=False,
                              image_size=SIZE, other_sizes=other_sizes)
    table = pd.read_csv(out, keep_default_na=False)
    if other_sizes == "skip":
        assert summary.failures["big.png"] == "size 96x256, expected 64x128"
        assert "big.png" not in set(table["ImageId"]) and not summary.notes
    else:
        assert summary.notes == {"big.png": "resized from 96x256 to 64x128; its masks are in 64x128 coordinates"}
        assert "(1 resized)" in summary.line() and "big.png" not in summary.failures
        rows = table.loc[table["ImageId"] == "big.png", "EncodedPixels"].tolist()
        assert rows == oracle(backend, cv2.resize(big, (128, 64), interpolation=cv2.INTER_AREA))
        for text in rows:
            assert rle.decode(text, SIZE).shape == SIZE


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"other_sizes": "stretch"}, "other_sizes must be 'skip' or 'resize', got 'stretch'"),
        ({"image_size": (256,)}, r"image_size must be \(height, width\) of positive ints, got \(256,\)"),
        ({"max_pixels": 0}, "max_pixels must be a positive int or None, got 0"),
    ],
)
def test_size_options_are_checked(backend: TorchBackend, folder: Path, tmp_path: Path, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        segment_to_file(folder, tmp_path / "s.csv", segmenter=Segmenter(backend=backend), progress=False, **options)
    assert not (tmp_path / "s.csv").exists()


# ---- crashes leave no temporary files -----------------------------------------------------------


@pytest.mark.parametrize("stale", [".sub.csv.k1ll3d.tmp", ".sub.csv.failures.csv.k1ll3d.tmp",
                                   ".sub.csv.run.json.k1ll3d.tmp", ".sub.csv.partial.k1ll3d.tmp"])
def test_temporary_files_of_a_killed_run_are_removed(backend: TorchBackend, folder: Path, tmp_path: Path, stale: str) -> None:
    (tmp_path / stale).write_text("half written")
    (tmp_path / ".other.csv.k1ll3d.tmp").write_text("not ours")
    segment_to_file(folder, tmp_path / "sub.csv", segmenter=Segmenter(backend=backend), progress=False, image_size=SIZE)
    assert not (tmp_path / stale).exists() and (tmp_path / ".other.csv.k1ll3d.tmp").exists()


def test_a_crash_while_writing_leaves_no_temporary_file(
    backend: TorchBackend, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pd.DataFrame.to_csv

    def disk_full(self: pd.DataFrame, path: object, *args: object, **kwargs: object) -> None:
        Path(str(path)).write_text("ImageId,Cla")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    seg = Segmenter(backend=backend, batch_size=2)
    with pytest.raises(OSError, match="No space left on device"):
        segment_to_file(folder, tmp_path / "sub.csv", segmenter=seg, progress=False, image_size=SIZE)
    monkeypatch.setattr(pd.DataFrame, "to_csv", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "sub.csv.partial"]  # the journal, nothing else
    summary = segment_to_file(folder, tmp_path / "sub.csv", segmenter=seg, progress=False, image_size=SIZE, resume=True)
    assert summary.resumed == 5 and summary.processed == 0
