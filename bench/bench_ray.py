"""Ray's overhead: ``--engine ray`` against the local engine on the same 200 real JPEGs, in one run.

Input: up to 200 real Severstal JPEGs from ``../shared/data/severstal`` (``images/`` and
``test_images/``), copied into a temporary folder; skipped when the real data or Ray is absent.

* Reference ("local"): :func:`steelfast.segment.segment_to_file`, the ``steelfast-segment`` job
  (model load, decode threads, model, post-processing, RLE, CSV writer).
* Ours ("ray"): :func:`steelfast.segment_with_ray` writing the same CSV, on a local Ray runtime
  started once beforehand with ``ray.init(num_cpus=2)`` (its start-up is printed, not counted: a
  cluster is up before jobs arrive). One actor (``concurrency=1``) with the model's threads on both
  cores; its process start, imports and model load are counted.
* The rounds alternate local and ray, so that the load of a shared machine falls on both alike;
  every round's rates are printed. Both CSVs must be byte-identical.
* Goal (issue 14): ray reaches at least 80 % of the local images/s (total time over all rounds).

Run: ``python -m pytest bench/bench_ray.py -p no:cacheprovider --benchmark-enable -s``
(``STEELFAST_BENCH_ROUNDS``, default 3, sets the rounds).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from harness import shared_data_dir

from steelfast.segment import segment_to_file

N_IMAGES = 200
ROUNDS = int(os.environ.get("STEELFAST_BENCH_ROUNDS", "3"))

pytestmark = [
    # Ray Data's own DataContext sets deprecated fields of its own when it is first created.
    pytest.mark.filterwarnings("ignore:`use_push_based_shuffle` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`use_polars` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`use_arrow_tensor_v2` is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = shared_data_dir()
    files = sorted((root / "images").glob("*.jpg")) + sorted((root / "test_images").glob("*.jpg"))
    if len(files) < 20:
        pytest.skip(f"real JPEGs not found in {root}")
    out = tmp_path_factory.mktemp("real_jpegs")
    for f in files[:N_IMAGES]:
        shutil.copyfile(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray", reason="the Ray engine needs pip install 'steelfast[ray]'")
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"\nray.init(num_cpus=2): {time.perf_counter() - start:.1f} s (not counted)")
    yield ray
    ray.shutdown()


def test_ray_against_local(benchmark, ray_runtime, folder: Path, tmp_path: Path) -> None:
    from steelfast import segment_with_ray

    n = len(list(folder.iterdir()))
    local_out, ray_out = tmp_path / "local.csv", tmp_path / "ray.csv"
    times: dict[str, list[float]] = {"local": [], "ray": []}
    rounds = 1 if benchmark.disabled else ROUNDS
    for r in range(rounds):
        start = time.perf_counter()
        segment_to_file(folder, local_out, overwrite=True, progress=False)
        times["local"].append(time.perf_counter() - start)
        start = time.perf_counter()
        segment_with_ray(folder, output=ray_out, overwrite=True)
        times["ray"].append(time.perf_counter() - start)
        print(f"\nround {r + 1}: local {n / times['local'][-1]:.2f} images/s, ray {n / times['ray'][-1]:.2f} "
              f"images/s ({times['local'][-1] / times['ray'][-1]:.1%})")
        assert ray_out.read_bytes() == local_out.read_bytes()
    if benchmark.disabled:
        pytest.skip("timing is off (--benchmark-disable): the outputs were compared, the goal is not checked")
    share = sum(times["local"]) / sum(times["ray"])
    print(f"\nover {rounds} rounds: local {n * rounds / sum(times['local']):.2f} images/s, ray "
          f"{n * rounds / sum(times['ray']):.2f} images/s: ray at {share:.1%} of local (goal >= 80 %)")
    assert share >= 0.80, f"ray reaches {share:.1%} of the local images/s (goal >= 80 %)"
