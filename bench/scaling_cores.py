"""How the main job scales with CPU cores: ``steelfast-segment`` pinned to 1, 2, ... cores with ``taskset``.

Input: up to 200 real Severstal JPEGs from ``../shared/data/severstal`` (``images/`` and ``test_images/``), copied
into a temporary folder. Each round runs the command once per core set, alternating, so that the load of a shared
machine falls on all alike; it prints the command's own images/s (its summary line: model load included, interpreter
start-up excluded) and the wall time. With ``--shards``, each round also runs one process per core of the largest
core set at once, each pinned to its core with ``OMP_NUM_THREADS=1`` on its share of the folder (the "N processes"
way to use N cores), timed from the first start to the last end. Linux only (``taskset``).

Run: ``python bench/scaling_cores.py --cores 0 0,1 --rounds 3 --shards``
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import shared_data_dir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", nargs="+", default=["0", "0,1"], help="taskset core lists, e.g. 0 0,1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--shards", action="store_true", help="also time one 1-thread process per core")
    args = parser.parse_args()
    root = shared_data_dir()
    files = (sorted((root / "images").glob("*.jpg")) + sorted((root / "test_images").glob("*.jpg")))[: args.images]
    if not files:
        sys.exit(f"no real JPEGs in {root}")
    command = shutil.which("steelfast-segment") or sys.exit("steelfast-segment is not installed")
    rates: dict[str, list[float]] = {c: [] for c in args.cores}
    cores_all = max(args.cores, key=lambda c: len(c.split(",")))
    if args.shards:
        rates[f"{cores_all} as shards"] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "real"
        folder.mkdir()
        for f in files:
            shutil.copyfile(f, folder / f.name)
        for r in range(args.rounds):
            for cores in args.cores:
                start = time.perf_counter()
                done = subprocess.run(
                    ["taskset", "-c", cores, command, str(folder), "-o", str(Path(tmp) / "sub.csv"), "--overwrite",
                     "--no-progress"], capture_output=True, text=True, check=True, env={**os.environ},
                )
                wall = time.perf_counter() - start
                rate = float(re.search(r"([0-9.]+) images/s", done.stdout).group(1))
                rates[cores].append(rate)
                print(f"round {r + 1}, cores {cores}: {rate:.2f} images/s ({wall:.1f} s wall for {len(files)} images)",
                      flush=True)
            if args.shards:
                rate = _shards(command, folder, Path(tmp), cores_all.split(","))
                rates[f"{cores_all} as shards"].append(rate)
                print(f"round {r + 1}, cores {cores_all} as one process per core: {rate:.2f} images/s", flush=True)
    base = statistics.mean(rates[args.cores[0]])
    for cores, values in rates.items():
        mean = statistics.mean(values)
        print(f"cores {cores}: {mean:.2f} images/s (range {min(values):.2f}-{max(values):.2f}), "
              f"{mean / base:.2f}x of cores {args.cores[0]}")


def _shards(command: str, folder: Path, tmp: Path, cores: list[str]) -> float:
    """Images/s of one single-threaded process per core, each on its share of the folder, all at once."""
    files = sorted(folder.iterdir())
    procs = []
    start = time.perf_counter()
    for k, core in enumerate(cores):
        shard = tmp / f"shard{k}"
        shutil.rmtree(shard, ignore_errors=True)
        shard.mkdir()
        for f in files[k :: len(cores)]:
            os.symlink(f, shard / f.name)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(
            ["taskset", "-c", core, command, str(shard), "-o", str(tmp / f"shard{k}.csv"), "--overwrite",
             "--no-progress", "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        ))
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"a shard failed with exit code {p.returncode}")
    return len(files) / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
