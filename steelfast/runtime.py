"""What the compiled core chose for this process at run time.

Nothing here changes the host process: steelfast keeps no output buffer cache and leaves the allocator alone (reuse
is explicit, ``steelfast.rle.decode_batch(..., out=)``).
"""

from __future__ import annotations

from steelfast._compiled import core

__all__ = ["simd_kernels"]


def simd_kernels() -> str:
    """The block-comparison kernels the compiled core chose for this CPU: ``"avx2"`` or ``"portable"``.

    Chosen once per process; ``STEELFAST_DISABLE_AVX2=1`` in the environment before the first encode forces
    ``"portable"`` (results are identical, only slower).
    """
    return str(core.simd_kernels())
