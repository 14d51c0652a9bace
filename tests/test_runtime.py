"""steelfast.runtime: what the compiled core chose at run time."""

from __future__ import annotations

from steelfast import runtime


def test_simd_kernels_names_a_known_choice():
    assert runtime.simd_kernels() in ("avx2", "portable")
