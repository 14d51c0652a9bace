"""steelfast.runtime: the output buffer cache and the allocator settings."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from steelfast import rle, runtime

BIG = 4 * 2**20  # above the 2 MiB at which decode_batch outputs come from the cache
PAGE = 2 * 2**20


@pytest.fixture
def empty_cache():
    # The tests set the limit themselves, whatever STEELFAST_BUFFER_CACHE_MB says.
    previous = runtime.set_buffer_cache_limit(512 * 2**20)
    runtime.release_cached_buffers()
    yield
    runtime.set_buffer_cache_limit(previous)
    runtime.release_cached_buffers()


def test_default_limit_is_512_mib():
    code = "from steelfast import runtime; print(runtime.set_buffer_cache_limit(0))"
    env = {k: v for k, v in os.environ.items() if k != "STEELFAST_BUFFER_CACHE_MB"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == str(512 * 2**20)


def _decode_big(height: int = 256, width: int = 1600) -> np.ndarray:
    count = BIG // (height * width) + 1
    return rle.decode_batch(["1 5"] * count, (height, width))


def test_a_freed_output_returns_to_the_cache_after_its_last_view(empty_cache):
    out = _decode_big()
    rounded = -(-out.nbytes // PAGE) * PAGE
    view = out[1]
    del out
    assert runtime.cached_buffer_bytes() == 0  # the view still uses the buffer
    assert view[:5, 0].tolist() == [1, 1, 1, 1, 1] and view.sum() == 5
    del view
    assert runtime.cached_buffer_bytes() == rounded
    again = _decode_big()
    assert runtime.cached_buffer_bytes() == 0 and again.sum() == 5 * again.shape[0]
    del again
    assert runtime.release_cached_buffers() == rounded
    assert runtime.cached_buffer_bytes() == 0


def test_small_outputs_bypass_the_cache(empty_cache):
    out = rle.decode_batch(["1 5"] * 2)  # 0.8 MB
    del out
    assert runtime.cached_buffer_bytes() == 0


def test_limit_zero_disables_the_cache_and_drops_what_it_held(empty_cache):
    _decode_big()  # freed at once: it fills the cache
    assert runtime.cached_buffer_bytes() > 0
    runtime.set_buffer_cache_limit(0)
    assert runtime.cached_buffer_bytes() == 0
    _decode_big()
    assert runtime.cached_buffer_bytes() == 0


def test_the_cache_keeps_the_newest_buffers_within_its_limit(empty_cache):
    first, second = _decode_big(), _decode_big()  # 4.5 MB each: three 2 MiB pages
    runtime.set_buffer_cache_limit(3 * PAGE)  # room for one of them
    newest = second.__array_interface__["data"][0]
    del first, second
    assert runtime.cached_buffer_bytes() == 3 * PAGE
    assert _decode_big().__array_interface__["data"][0] == newest


@pytest.mark.parametrize("value", ["1", 1.5, True, None])
def test_limit_must_be_an_integer(value):
    with pytest.raises(TypeError, match="nbytes must be an integer number of bytes, got"):
        runtime.set_buffer_cache_limit(value)


@pytest.mark.parametrize("value", [-1, 2**64])
def test_limit_must_be_in_range(value):
    with pytest.raises(ValueError, match=rf"nbytes must be >= 0 and < 2\*\*64 \(0 disables the cache\), got {value}"):
        runtime.set_buffer_cache_limit(value)


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=False
    )


def test_environment_variable_sets_the_limit():
    code = "from steelfast import rle, runtime; rle.decode_batch(['1 5'] * 12); print(runtime.cached_buffer_bytes())"
    assert _run(code, STEELFAST_BUFFER_CACHE_MB="0").stdout.strip() == "0"
    assert _run(code, STEELFAST_BUFFER_CACHE_MB="8").stdout.strip() == str(3 * PAGE)


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", "1e30"])
def test_bad_environment_variable_is_named(value):
    result = _run("import steelfast", STEELFAST_BUFFER_CACHE_MB=value)
    assert result.returncode != 0
    assert f"STEELFAST_BUFFER_CACHE_MB must be a number of MiB >= 0 (0 disables the cache), got {value!r}" in (
        result.stderr
    )


def test_retain_freed_memory_can_be_opted_out_of():
    code = "from steelfast import runtime; print(runtime.retain_freed_memory())"
    assert _run(code, STEELFAST_TUNE_MALLOC="0").stdout.strip() == "False"
