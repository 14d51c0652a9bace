"""Benchmark harness (import as ``harness``): each area times steelfast next to its reference in one run and checks the speed goals.

``timed(group, name, fn)`` runs ``fn`` under pytest-benchmark and records its best time; a later
``speedup(group, ours, reference)`` reads both from the same run. With ``--benchmark-disable`` (how CI runs this
folder) every benchmark still runs once and asserts its result equals the reference, and the goal checks skip
because nothing was timed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the NumPy oracles live with the tests

from oracles import mask2rle, rle2mask  # noqa: E402  (re-exported for the bench modules)

__all__ = ["make_timed", "mask2rle", "rle2mask", "shared_data_dir", "speedup"]

_TIMES: dict[tuple[str, str], float] = {}


def shared_data_dir() -> Path:
    env = os.environ.get("STEELFAST_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "severstal"


def make_timed(benchmark):
    """Return ``run(group, name, fn)``: benchmark ``fn`` and remember its best round time."""

    def run(group: str, name: str, fn):
        benchmark.group = group
        benchmark.extra_info["impl"] = name
        result = benchmark(fn)
        if benchmark.stats is not None and not benchmark.disabled:
            _TIMES[(group, name)] = benchmark.stats.stats.min
        return result

    return run


def speedup(group: str, ours: str, reference: str) -> float:
    """Best reference time over best time of ours, both from this run; skips when timing was disabled."""
    if (group, ours) not in _TIMES or (group, reference) not in _TIMES:
        pytest.skip(f"no timings for {group!r} in this run (benchmarks disabled or filtered)")
    return _TIMES[(group, reference)] / _TIMES[(group, ours)]
