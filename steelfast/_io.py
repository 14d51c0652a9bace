"""File basics: the one ``PathLike`` alias, and atomic writing (a temporary file beside the target, then a rename)."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union

__all__ = ["PathLike", "atomic_path", "atomic_save_png", "atomic_write_bytes", "naming"]

#: A file or folder argument: a ``str`` or any ``os.PathLike`` (e.g. :class:`pathlib.Path`).
PathLike = Union[str, "os.PathLike[str]"]

# Read once: os.umask can only be read by setting it, which is not thread-safe to repeat per file.
_UMASK = os.umask(0)
os.umask(_UMASK)


#: The errors of writing a file that come without its name (from write(), flush(), close()).
_WRITE_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS") if hasattr(errno, n))


@contextlib.contextmanager
def naming(path: PathLike) -> Iterator[None]:
    """Give an error of writing raised inside without a file name (a full disk: ``[Errno 28] No
    space left on device``; a quota, a file too large, a read-only file system) the name of ``path``,
    so the one-line error says which file could not be written. Other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno not in _WRITE_ERRNOS:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was, so a crash or Ctrl-C never
    leaves a half-written output behind. The result gets the permissions a plain ``open()`` would give it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        os.close(fd)  # inside the try: a Ctrl-C from here on still removes the file
        with naming(target):
            yield tmp
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; ``fsync`` also forces it to disk before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    return Path(path)


def atomic_save_png(figure: Any, path: PathLike, dpi: Any = "figure") -> Path:
    """Save a matplotlib figure to ``path`` as PNG, atomically (``dpi`` as in ``Figure.savefig``)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png")
    return Path(path)
