"""Loads the compiled core once, with an error that says how to fix a broken install.

It also applies ``STEELFAST_BUFFER_CACHE_MB`` (see :func:`steelfast.runtime.set_buffer_cache_limit`).
"""

from __future__ import annotations

import math
import os

__all__ = ["core"]

try:
    from steelfast import _core as core
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    raise ImportError(
        "steelfast's compiled core (steelfast._core) is missing or failed to load "
        f"({exc}). steelfast has no pure-Python fallback. Reinstall from the source tree with "
        "`pip install --force-reinstall --no-deps .` (needs a C++17 compiler and CMake >= 3.18), "
        "or install a wheel built for this platform."
    ) from exc


def _buffer_cache_limit_from_env() -> int | None:
    text = os.environ.get("STEELFAST_BUFFER_CACHE_MB")
    if text is None or not text.strip():
        return None
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = math.nan
    if not (math.isfinite(megabytes) and 0 <= megabytes * 2**20 < 2**64):
        raise ValueError(f"STEELFAST_BUFFER_CACHE_MB must be a number of MiB >= 0 (0 disables the cache), got {text!r}")
    return int(megabytes * 2**20)


_limit = _buffer_cache_limit_from_env()
if _limit is not None:
    core.set_buffer_cache_limit(_limit)
