"""Data-parallel helpers over :mod:`torch.distributed` (launched with ``torchrun``).

``torchrun --nproc-per-node 2 -m steelfast train DATA --out RUN`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables; :func:`init_from_env` joins the
process group (``nccl`` on CUDA, ``gloo`` on the CPU). Each process trains on its own shard of
every epoch (:class:`EpochDistributedSampler`), gradients are averaged by
:class:`torch.nn.parallel.DistributedDataParallel`, and only rank 0 validates and writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from steelfast._validate import check_weights

__all__ = ["DistInfo", "EpochDistributedSampler", "all_true", "broadcast_object", "init_from_env"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` (1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an int, got {raw!r}") from None


def init_from_env(device_type: str = "cpu") -> DistInfo:
    """Join the process group described by torchrun's environment, if any.

    Args:
        device_type: ``"cuda"`` selects the nccl backend, anything else gloo.

    Returns:
        A :class:`DistInfo`; ``world_size == 1`` (and nothing initialised) without torchrun.
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), False)
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world} but this torch build has no torch.distributed")
    backend = "nccl" if device_type == "cuda" and dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), True)


def all_true(flag: bool, info: DistInfo) -> bool:
    """Logical OR of ``flag`` over all ranks (so every rank stops at the same step)."""
    if not info.distributed:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_object(obj: object, info: DistInfo) -> object:
    """Rank 0's ``obj`` on every rank (plain Python data)."""
    if not info.distributed:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class EpochDistributedSampler(DistributedSampler):
    """:class:`DistributedSampler` yielding ``(index, epoch)`` pairs.

    :class:`steelfast.data.dataset.SteelDataset` derives each sample's augmentation from the epoch it
    receives, so augmentations vary per epoch and are the same whatever the number of processes.
    With ``weights``, every rank draws the same ``total_size`` indices with replacement (seeded by
    ``seed`` and the epoch) and keeps every ``num_replicas``-th one from its rank on.
    """

    def __init__(self, dataset: Any, *args: Any, weights: np.ndarray | None = None, **kwargs: Any) -> None:
        super().__init__(dataset, *args, **kwargs)
        if weights is not None and np.shape(weights) != (len(dataset),):
            raise ValueError(f"weights must have one entry per sample ({len(dataset)}), got shape {np.shape(weights)}")
        # The same validation and normalisation as the single-process EpochSampler.
        self.weights = None if weights is None else check_weights(weights, len(dataset))

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = int(self.epoch)
        if self.weights is None:
            return iter([(int(i), epoch) for i in super().__iter__()])
        rng = np.random.default_rng((self.seed, epoch))
        drawn = rng.choice(len(self.weights), size=self.total_size, replace=True, p=self.weights)
        return iter([(int(i), epoch) for i in drawn[self.rank : self.total_size : self.num_replicas]])
