"""Fixtures for the benchmarks; the harness itself is bench/harness.py."""

from __future__ import annotations

import pytest
from harness import make_timed


@pytest.fixture
def timed(benchmark):
    """``timed(group, name, fn)``: benchmark ``fn`` and record its best time for the goal checks."""
    return make_timed(benchmark)
