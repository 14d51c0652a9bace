"""Loads the compiled core once, with an error that says how to fix a broken install."""

from __future__ import annotations

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
