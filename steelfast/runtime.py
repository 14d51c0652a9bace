"""Process-level performance settings.

:func:`retain_freed_memory` makes glibc keep freed memory for reuse instead of returning it to the kernel. Without
it, every new mask or activation buffer above glibc's mmap threshold page-faults each 4 KiB page again, which on
virtual machines costs about a microsecond per page: in ``bench/bench_inference.py`` plain eager fp32 inference
of one 256x1600 image goes from 12.1 to 14.9 images/s with it.
The inference backends turn it on (``STEELFAST_TUNE_MALLOC=0`` opts out); it changes the allocator of the whole
process, and the process keeps its peak heap.
"""

from __future__ import annotations

import os

from steelfast._compiled import core

__all__ = ["retain_freed_memory", "simd_kernels"]

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
