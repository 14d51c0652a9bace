"""Validation of the U-Net trainer: loss, soft Dice and the competition score on full-size images."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from steelfast._device import autocast, autocast_dtype, resolve_device, to_device
from steelfast.checkpoint import (
    unwrap_model,
)
from steelfast.losses import bce_dice_loss
from steelfast.metrics import kaggle_score_report
from steelfast.rle import encode_probs
from steelfast.severstal import CLASSES
from steelfast.training.config import EvalResult
from steelfast.training.history import (
    progress_bar,
)
from steelfast.training.tune import (
    ThresholdStats,
)

__all__ = ["evaluate"]


def evaluate(
    model: nn.Module,
    dataset: Any,
    truth: pd.DataFrame,
    image_ids: Sequence[str],
    *,
    thresholds: Sequence[float] | float = 0.5,
    min_areas: Sequence[int] | int = 0,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    amp: str = "auto",
    channels_last: bool = True,
    stats_thresholds: Sequence[float] | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> EvalResult:
    """Run ``model`` over a validation set and score it like the competition.

    Args:
        model: Model returning logits (N, 4, H, W).
        dataset: Dataset of ``(image (C, H, W), mask (4, H, W))`` in ``image_ids`` order.
        truth: Labels of the images (ImageId, ClassId, EncodedPixels).
        image_ids: Image id of each dataset item.
        thresholds: Probability threshold, one or per class.
        min_areas: Minimum defect area in pixels, one or per class.
        batch_size: Images per forward pass.
        device: Where to run the model.
        amp: Autocast mode (see :class:`TrainConfig`).
        channels_last: Feed channels-last tensors.
        stats_thresholds: If given, also collect :class:`~steelfast.training.tune.ThresholdStats` on this
            grid for post-processing tuning.
        num_workers: DataLoader workers.
        progress: Show a progress bar.

    Returns:
        An :class:`EvalResult`.
    """
    from torch.utils.data import DataLoader

    ids = [str(i) for i in image_ids]
    if len(ids) != len(dataset):
        raise ValueError(f"image_ids has {len(ids)} names but the dataset has {len(dataset)} items")
    if not ids:
        raise ValueError("cannot evaluate on an empty validation set")
    dev = resolve_device(device)
    dtype = autocast_dtype(amp, dev)
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    stats = ThresholdStats(stats_thresholds) if stats_thresholds is not None else None
    inter = psum = tsum = None
    loss_sum = 0.0
    rows: list[tuple[str, int, str]] = []
    shape: tuple[int, int] | None = None
    start = time.perf_counter()
    seen = 0
    with torch.inference_mode():
        for x, y in progress_bar(loader, progress, desc="validate", unit="batch"):
            x = to_device(x, dev, channels_last)
            y = y.to(dev)
            with autocast(dev, dtype):
                logits = net(x)
            logits = logits.float()
            loss_sum += float(bce_dice_loss(logits, y)) * len(x)
            probs = torch.sigmoid(logits)
            b_inter, b_psum, b_tsum = (
                (probs * y).sum((0, 2, 3)),
                probs.sum((0, 2, 3)),
                y.sum((0, 2, 3)),
            )
            inter = b_inter if inter is None else inter + b_inter
            psum = b_psum if psum is None else psum + b_psum
            tsum = b_tsum if tsum is None else tsum + b_tsum
            if stats is not None:
                stats.update(probs, y)
            shape = (int(x.shape[2]), int(x.shape[3]))
            for k, per_class in enumerate(encode_probs(probs.cpu().numpy(), thresholds, min_areas)):
                iid = ids[seen + k]
                rows.extend((iid, c, text) for c, text in zip(CLASSES, per_class) if text)
            seen += len(x)
    net.train(was_training)
    if inter is None or psum is None or tsum is None or shape is None:
        raise ValueError("the validation loader yielded no batches")
    soft = ((2 * inter + 1.0) / (psum + tsum + 1.0)).mean().item()
    sub = pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"])
    report = kaggle_score_report(
        sub, truth[["ImageId", "ClassId", "EncodedPixels"]], images=ids, shape=shape
    )
    return EvalResult(
        loss=loss_sum / seen,
        soft_dice=float(soft),
        score=float(report.loc["all", "dice"]),
        report=report,
        stats=stats,
        images=seen,
        seconds=time.perf_counter() - start,
    )


