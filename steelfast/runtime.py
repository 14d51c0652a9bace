"""Process-level performance settings.

**Output buffer cache.** :func:`steelfast.rle.decode_batch` outputs of 2 MiB and more live in buffers that go back
to a cache when the array (and every view of it) is freed, and the next output of the same size reuses one. A fresh
buffer costs a page fault per 2 MiB and the kernel zeroing every page, more than decoding itself: 256 real masks
(105 MB) decode in 4.9 ms into fresh pages on the project's VM and in 2.1 ms into a reused buffer. Cached pages are
marked ``MADV_FREE``: the kernel may reclaim them under memory pressure, but they count in the process's RSS until
it does. The cache keeps at most 512 MiB by default; :func:`set_buffer_cache_limit` (or ``STEELFAST_BUFFER_CACHE_MB``
in the environment before import) changes that, 0 disables it.

**glibc trimming.** :func:`retain_freed_memory` makes glibc keep freed memory for reuse instead of returning it to
the kernel. Without it, every new mask or activation buffer above glibc's mmap threshold page-faults each 4 KiB page
again, which on virtual machines costs about a microsecond per page: in ``bench/bench_inference.py`` plain eager fp32
inference of one 256x1600 image goes from 12.1 to 14.9 images/s with it.
The inference backends turn it on (``STEELFAST_TUNE_MALLOC=0`` opts out); it changes the allocator of the whole
process, and the process keeps its peak heap.
"""

from __future__ import annotations

import os

import numpy as np

from steelfast._compiled import core

__all__ = [
    "cached_buffer_bytes",
    "release_cached_buffers",
    "retain_freed_memory",
    "set_buffer_cache_limit",
    "simd_kernels",
]

_TRIM_THRESHOLD = 1 << 30
_retained = False


def retain_freed_memory() -> bool:
    """Serve large blocks from the heap and keep up to 1 GiB of freed memory (glibc only; idempotent).

    The same as starting Python with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824``.

    Returns:
        True if the settings are in effect, False where the C library is not glibc or
        ``STEELFAST_TUNE_MALLOC=0`` disables it.
    """
    global _retained
    if _retained:
        return True
    if os.environ.get("STEELFAST_TUNE_MALLOC", "1") == "0":
        return False
    _retained = bool(core.retain_freed_memory(_TRIM_THRESHOLD))
    return _retained


def simd_kernels() -> str:
    """The block-comparison kernels the compiled core chose for this CPU: ``"avx2"`` or ``"portable"``.

    Chosen once per process; ``STEELFAST_DISABLE_AVX2=1`` in the environment before the first encode forces
    ``"portable"`` (results are identical, only slower).
    """
    return str(core.simd_kernels())


def set_buffer_cache_limit(nbytes: int) -> int:
    """Let the output buffer cache keep at most ``nbytes`` bytes of freed buffers (0 disables it).

    Buffers beyond the new limit are released at once, oldest first. The default is 512 MiB. The cache is per
    process: each DataLoader worker or multiprocessing child has its own.

    Args:
        nbytes: the limit in bytes, an integer in [0, 2**64).

    Returns:
        The previous limit, so that a setting can be restored (like ``numpy.seterr``).

    Raises:
        TypeError: ``nbytes`` is not an integer.
        ValueError: ``nbytes`` is negative or not below 2**64.
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)):
        raise TypeError(f"nbytes must be an integer number of bytes, got {type(nbytes).__name__}")
    if not 0 <= nbytes < 2**64:
        raise ValueError(f"nbytes must be >= 0 and < 2**64 (0 disables the cache), got {nbytes}")
    return int(core.set_buffer_cache_limit(int(nbytes)))


def cached_buffer_bytes() -> int:
    """Bytes of freed output buffers the cache holds now.

    Returns:
        A multiple of 2 MiB (buffers are kept in whole 2 MiB pages).
    """
    return int(core.cached_buffer_bytes())


def release_cached_buffers() -> int:
    """Return every cached output buffer to the system now.

    Returns:
        The bytes released.
    """
    return int(core.release_cached_buffers())
