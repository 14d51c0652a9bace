"""steelfast.training.distributed: the epoch sampler that torchrun ranks share, and DDP training on two CPU processes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from training_helpers import tiny_config, write_dataset

from steelfast.checkpoint import read_metadata
from steelfast.training.distributed import EpochDistributedSampler
from steelfast.training.loop import train


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("steel"))


def test_distributed_sampler_ranks_share_one_weighted_draw() -> None:
    weights = np.array([0.0, 1.0, 3.0, 0.0, 1.0])
    ranks = [
        EpochDistributedSampler(list(range(5)), num_replicas=2, rank=r, seed=4, weights=weights) for r in (0, 1)
    ]
    for s in ranks:
        s.set_epoch(2)
    draws = [list(s) for s in ranks]
    assert len(draws[0]) == len(draws[1]) == 3 and all(e == 2 for d in draws for _, e in d)
    drawn = [i for d in draws for i, _ in d]
    assert set(drawn) <= {1, 2, 4}  # zero weight: never drawn
    again = EpochDistributedSampler(list(range(5)), num_replicas=2, rank=0, seed=4, weights=weights)
    again.set_epoch(2)
    assert list(again) == draws[0]
    with pytest.raises(ValueError, match=r"one entry per sample \(5\), got shape \(2,\)"):
        EpochDistributedSampler(list(range(5)), num_replicas=1, rank=0, weights=np.ones(2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, data_dir: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    result = train(data_dir, out, tiny_config(epochs=2, batch_size=2, device="cpu"))
    summary = {
        "rank": result.rank,
        "best_epoch": result.best_epoch,
        "post": result.postprocess,
        "epochs": [r["epoch"] for r in result.history],
        "score": result.final["score"],
    }
    (Path(out).parent / f"rank{rank}.json").write_text(json.dumps(summary))


@pytest.mark.slow
def test_distributed_data_parallel_on_two_cpu_processes(data_dir: Path, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    out = tmp_path / "run"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(data_dir), str(out)), nprocs=2, join=True)
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    meta = read_metadata(out / "best.json")
    assert meta["training"]["world_size"] == 2
    # 12 training images over 2 ranks: each sees 6 per epoch
    assert int(history["train_images"].iloc[0]) == 6
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (r0.pop("rank"), r1.pop("rank")) == (0, 1)
    assert r0 == r1 and r0["epochs"] == [1, 2]
