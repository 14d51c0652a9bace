"""Process-level performance settings.

:func:`retain_freed_memory` makes glibc keep freed large blocks for reuse instead of returning them to the kernel.
Without it, every new mask or activation buffer above glibc's mmap threshold page-faults each 4 KiB page again,
which on virtual machines costs about a microsecond per page: measured here, decoding 256 real masks one by one
and batched CPU inference both spend most of their time in those faults. The ``steelfast-segment`` CLI turns it on;
library users opt in, because it changes the allocator of the whole process.
"""

from __future__ import annotations

from steelfast._compiled import core

__all__ = ["retain_freed_memory"]

_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit
_TRIM_THRESHOLD = 1024 * 1024 * 1024


def retain_freed_memory() -> bool:
    """Keep freed blocks up to 32 MiB in the heap for reuse (glibc only).

    Returns:
        True if the allocator accepted the settings, False where the C library is not glibc.
    """
    return bool(core.retain_freed_memory(_MMAP_THRESHOLD, _TRIM_THRESHOLD))
