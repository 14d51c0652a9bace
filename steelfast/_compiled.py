"""Loads the compiled core once, with an error that says how to fix a broken install."""

from __future__ import annotations

import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

__all__ = ["core"]


def _has_core(package: Path) -> bool:
    return any((package / f"_core{suffix}").is_file() for suffix in EXTENSION_SUFFIXES)


def _shadowed_install() -> tuple[Path, Path] | None:
    """(source root, installed package) when this steelfast is a source tree without a compiled core that sits on
    sys.path ahead of an installed steelfast which has one (Python started in a repo checkout); else None."""
    package = Path(__file__).resolve().parent
    if _has_core(package):
        return None
    for entry in sys.path:
        try:
            folder = Path(entry or os.getcwd()).resolve()
        except (OSError, RuntimeError):
            continue
        if folder != package.parent and _has_core(folder / "steelfast"):
            return package.parent, folder / "steelfast"
    return None


try:
    from steelfast import _core as core
except ImportError as exc:  # tested in a subprocess: tests/test_compiled.py
    shadow = _shadowed_install()
    if shadow is not None:
        root, installed = shadow
        raise ImportError(
            f"`import steelfast` found the source tree {root / 'steelfast'}, which shadows the installed steelfast at "
            f"{installed}: the folder {root} comes first on sys.path (it is the current folder or the folder of the "
            "script you ran), and a source tree has no compiled core (steelfast._core) until it is built. Run Python "
            f"from another folder, or install this source tree editable (`pip install -e {root}`) so that it has its "
            f"own compiled core. ({exc})"
        ) from exc
    raise ImportError(
        "steelfast's compiled core (steelfast._core) is missing or failed to load "
        f"({exc}). steelfast has no pure-Python fallback. Reinstall from the source tree with "
        "`pip install --force-reinstall --no-deps .` (needs a C++17 compiler and CMake >= 3.18), "
        "or install a wheel built for this platform."
    ) from exc

