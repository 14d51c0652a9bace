"""steelfast._io: atomic writes, and OSErrors that name the file they could not write."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from steelfast._io import atomic_path, atomic_save_png, atomic_write_bytes, naming


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two", fsync=True)
    assert target.read_bytes() == b"two" and [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="crash"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS])
def test_an_unnamed_write_error_gets_the_target_name(tmp_path: Path, code: int) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(OSError, match=rf"\[Errno {code}\] .*: '{target}'") as info, atomic_path(target):
        raise OSError(code, "simulated")  # what a full disk raises from write(), with no file name
    assert info.value.errno == code and info.value.filename == str(target)
    assert not target.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "full", "/elsewhere/x"), OSError("no errno"),
                                   FileNotFoundError(errno.ENOENT, "gone", "/a/b"),
                                   OSError(errno.EIO, "a device error that is not about writing this file")])
def test_naming_leaves_named_errors_and_others_alone(error: OSError) -> None:
    with pytest.raises(type(error)) as info, naming("/target"):
        raise error
    assert info.value is error


def test_a_journal_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    from steelfast.inference.writer import Journal

    path = tmp_path / "sub.csv.partial"
    journal = Journal(path, {"model_sha256": "x"})

    class Full:
        def write(self, text: str) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            pass

    journal._fh.close()  # the real file, swapped for one on a full disk
    journal._fh = Full()
    with pytest.raises(OSError, match=rf"No space left on device: '{path}'"):
        journal.add("a.jpg", [""] * 4)


@pytest.mark.parametrize("fails", [False, True])
def test_atomic_save_png_writes_a_png_or_leaves_the_file_of_before(tmp_path: Path, fails: bool) -> None:
    from matplotlib.figure import Figure

    target = tmp_path / "chart.png"
    target.write_bytes(b"before")
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    if fails:
        def broken(*args, **kwargs):
            raise OSError("disk full")

        fig.savefig = broken  # type: ignore[method-assign]
        with pytest.raises(OSError, match="disk full"):
            atomic_save_png(fig, target, dpi=50)
        assert target.read_bytes() == b"before"
    else:
        assert atomic_save_png(fig, target, dpi=50) == target
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png"]
