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

__all__ = ["assert_goals", "copy_real_jpegs", "make_timed", "mask2rle", "recorded_speedup", "rle2mask", "shared_data_dir", "speedup"]

_TIMES: dict[tuple[str, str], float] = {}  # best round time
_MEANS: dict[tuple[str, str], float] = {}  # mean round time: the sustained rate of a throughput benchmark


def shared_data_dir() -> Path:
    env = os.environ.get("STEELFAST_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "severstal"


def copy_real_jpegs(tmp_path_factory: pytest.TempPathFactory, n: int) -> Path:
    """A fresh folder of the first ``n`` real JPEGs of ../shared (train, then test images); skips
    the calling test where fewer than 20 are found."""
    import shutil

    root = shared_data_dir()
    files = sorted((root / "images").glob("*.jpg")) + sorted((root / "test_images").glob("*.jpg"))
    if len(files) < 20:
        pytest.skip(f"real JPEGs not found in {root}")
    out = tmp_path_factory.mktemp("real_jpegs")
    for f in files[:n]:
        shutil.copyfile(f, out / f.name)
    return out


def make_timed(benchmark, rounds: int | None = None):
    """Return ``run(group, name, fn)``: benchmark ``fn`` and remember its best round time.

    ``rounds`` fixes the number of timed rounds (after one warm-up round) so that a slow reference gets as many
    chances at its best time as a fast implementation; by default pytest-benchmark's calibration decides.
    """

    def run(group: str, name: str, fn):
        benchmark.group = group
        benchmark.extra_info["impl"] = name
        if rounds is None:
            result = benchmark(fn)
        else:
            result = benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=1)
        if benchmark.stats is not None and not benchmark.disabled:
            _TIMES[(group, name)] = benchmark.stats.stats.min
            _MEANS[(group, name)] = benchmark.stats.stats.mean
        return result

    return run


def _ratio(times: dict[tuple[str, str], float], group: str, ours: str, reference: str) -> float | None:
    if (group, ours) not in times or (group, reference) not in times:
        return None
    return times[(group, reference)] / times[(group, ours)]


def speedup(group: str, ours: str, reference: str, stat: str = "min") -> float:
    """Reference time over our time, both from this run; skips when timing was disabled.

    ``stat="min"`` compares best round times (kernels: noise only ever adds time); ``stat="mean"`` compares
    sustained rates (throughput benchmarks whose reference is slow in most rounds, not by chance).
    """
    ratio = _ratio({"min": _TIMES, "mean": _MEANS}[stat], group, ours, reference)
    if ratio is None:
        pytest.skip(f"no timings for {group!r} in this run (benchmarks disabled or filtered)")
    return ratio


def recorded_speedup(group: str, ours: str, reference: str) -> float | None:
    """:func:`speedup` of best times for a figure that is only recorded: None (never a skip) when it was not timed."""
    return _ratio(_TIMES, group, ours, reference)


def assert_goals(goals: dict[str, tuple[float, float]]) -> None:
    """Print every ``name: (ratio, minimum)`` and then fail listing all that are below their minimum.

    Several goals of one area are checked together so that one missed goal does not hide the others' figures.
    """
    for name, (ratio, minimum) in goals.items():
        print(f"\n{name}: {ratio:.2f}x (goal >= {minimum}x)", end="")
    missed = [f"{name} {ratio:.2f}x < {minimum}x" for name, (ratio, minimum) in goals.items() if ratio < minimum]
    assert not missed, "missed: " + "; ".join(missed)
