"""One writer per file: an exclusive, non-blocking lock on a lock file, released by the kernel.

:func:`hold_lock` locks a lock file with ``flock`` (``msvcrt`` byte locks on Windows). The kernel
drops the lock when the holding process dies, however it dies, so a lock file left by a killed run
is simply taken over, with no PID guessing; a live holder makes the next run fail at once with an
:class:`~steelfast.inference.errors.OutputBusyError` that names its PID (written into the file).
The holder removes the file when it is done. ``flock`` does not lock across machines on some
network file systems.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from steelfast.inference.errors import OutputBusyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: msvcrt byte locks, also dropped when the process dies
    fcntl = None  # type: ignore[assignment]

__all__ = ["hold_lock"]


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as exc:
        if fcntl is not None and exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        return False
    return True


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def _acquire(path: Path, output: Path) -> int:
    # Lock, then make sure the locked file is still the one at `path`: a run that ends removes its
    # lock file while holding it, so a run that opened the file just before must try again.
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(fd):
                raise OutputBusyError(
                    f"another run{_holder(fd)} is writing {output}; wait for it to finish or choose "
                    f"another output (lock file {path})"
                )
            held = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode("ascii"))
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise OutputBusyError(f"cannot lock {path}: other runs keep replacing it")  # pragma: no cover


@contextlib.contextmanager
def hold_lock(path: Path, guarded: Path) -> Iterator[Path]:
    """Hold the lock file ``path`` that guards ``guarded`` for the block, then remove it.

    Raises:
        OutputBusyError: A live process holds the lock (the message names its PID).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, guarded)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):  # Windows cannot remove an open file
            path.unlink()
        os.close(fd)
