"""One training epoch of the U-Net trainer: batches → autocast forward → BCE + soft Dice → Adam
(with gradient scaling for float16), stopping early when a time budget runs out."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from steelfast._device import autocast, to_device
from steelfast.losses import bce_dice_loss
from steelfast.training.config import TrainConfig
from steelfast.training.data import set_epoch
from steelfast.training.distributed import (
    DistInfo,
    all_true,
)
from steelfast.training.history import (
    progress_bar,
)

__all__ = ["train_epoch"]


def train_epoch(
    net: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg: TrainConfig,
    device: torch.device,
    dtype: torch.dtype | None,
    info: DistInfo,
    epoch: int,
    show: bool,
    start_time: float,
    val_seconds_est: float | None,
    val_cost: float,
) -> tuple[dict[str, Any], bool]:
    """One pass over the training data; returns the history row and whether the budget ran out."""
    net.train()
    set_epoch(loader, epoch)
    loss_sum, images = 0.0, 0
    inter = psum = tsum = None
    stop = False
    t0 = time.perf_counter()
    bar = progress_bar(loader, show, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch")
    steps = max(len(loader), 1)
    for step, (x, y) in enumerate(bar):
        if cfg.lr_schedule == "cosine":
            if cfg.time_budget_s is not None:
                done = (time.perf_counter() - start_time) / cfg.time_budget_s
            else:
                done = (epoch + step / steps) / cfg.epochs
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(max(done, 0.0), 1.0)))
        x = to_device(x, device, cfg.channels_last)
        y = y.to(device, non_blocking=True)
        with autocast(device, dtype):
            logits = net(x)
        loss = bce_dice_loss(logits, y, mode=cfg.dice_mode)
        optimizer.zero_grad(set_to_none=True)
        if scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            probs = torch.sigmoid(logits.detach().float())
            b = ((probs * y).sum((0, 2, 3)), probs.sum((0, 2, 3)), y.sum((0, 2, 3)))
            inter = b[0] if inter is None else inter + b[0]
            psum = b[1] if psum is None else psum + b[1]
            tsum = b[2] if tsum is None else tsum + b[2]
        loss_sum += float(loss.detach()) * len(x)
        images += len(x)
        if show:
            bar.set_postfix(loss=f"{loss_sum / images:.4f}")  # type: ignore[union-attr]
        if cfg.time_budget_s is not None:
            elapsed = time.perf_counter() - start_time
            rate = images / max(time.perf_counter() - t0, 1e-9)
            # Until measured, validation is estimated as a forward pass (a third of a training
            # step) per training-image equivalent; it runs twice at the end (last epoch + final
            # evaluation of the best checkpoint).
            est = val_seconds_est if val_seconds_est is not None else val_cost / (3 * rate)
            stop = all_true(elapsed + 2.2 * est > cfg.time_budget_s, info)
            if stop:
                break
    seconds = time.perf_counter() - t0
    if inter is None or psum is None or tsum is None:
        raise ValueError(f"the training loader yielded no batches in epoch {epoch + 1}")
    if info.distributed:
        import torch.distributed as dist

        packed = torch.cat(
            [
                inter,
                psum,
                tsum,
                torch.tensor([loss_sum, images], dtype=inter.dtype, device=inter.device),
            ]
        )
        dist.all_reduce(packed)
        inter, psum, tsum = packed[:4], packed[4:8], packed[8:12]
        loss_sum, images_all = float(packed[12]), int(packed[13])
    else:
        images_all = images
    row = {
        "epoch": epoch + 1,
        "lr": optimizer.param_groups[0]["lr"],
        "train_loss": loss_sum / max(images_all, 1),
        "train_dice": float(((2 * inter + 1.0) / (psum + tsum + 1.0)).mean()),
        "train_images": images,
        "train_seconds": seconds,
        "train_images_per_s": images_all / seconds if seconds > 0 else 0.0,
        "stopped_early": bool(stop),
    }
    return row, stop
