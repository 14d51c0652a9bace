"""Options and results of the U-Net trainer (:mod:`steelfast.training.loop`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steelfast._validate import check_amp, check_int, check_positive_int
from steelfast.models import UNet
from steelfast.severstal import CLASSES
from steelfast.training.tune import (
    DEFAULT_MIN_AREAS,
    DEFAULT_THRESHOLDS,
    ThresholdStats,
)

__all__ = ["DEFAULT_ARCHITECTURE", "EvalResult", "TrainConfig", "TrainData", "TrainResult"]

DEFAULT_ARCHITECTURE: dict[str, Any] = dict(UNet().config)


@dataclass
class TrainConfig:
    """Training options. Optimiser, learning rate, batch size, full-width images and training on
    defective images only follow the Kaggle baseline this replaces.

    Attributes:
        epochs: Number of epochs.
        batch_size: Images per step and per process.
        lr: Adam learning rate.
        crop_width: Train on random crops this wide (multiple of 32, biased towards defects), or
            None for full-width images. Validation always uses full images.
        only_defects: Train only on images with at least one defect (validation keeps all).
        class_balance: Draw training images with replacement, rare classes more often: the
            ``power`` of :func:`steelfast.data.dataset.balanced_weights` (0 = every image once per
            epoch, the baseline; 0.5 = square-root balancing).
        lr_schedule: ``"constant"`` (the baseline) or ``"cosine"``: the learning rate decays from ``lr`` to
            zero along a half cosine over the run, measured in epochs, or in wall-clock time when
            ``time_budget_s`` is set (then the run is not bit-reproducible across machines).
        dice_mode: Pooling of the soft Dice term of the loss: ``"global"``, ``"class"`` or ``"pair"``
            (see :func:`steelfast.losses.soft_dice`).
        val_fraction: Share of images held out for validation (stratified by class set).
        flips: Random horizontal/vertical flips.
        seed: Seed of the split, the initial weights, the order and the augmentations.
        architecture: :class:`~steelfast.models.UNet` keyword arguments (``in_channels`` is the
            number of image channels); ignored when resuming (the checkpoint's is used).
        mean, std: Input normalisation in 0..1 units; None = the dataset defaults.
        amp: ``"auto"`` (bfloat16 on the CPU, float16 on CUDA), ``"bf16"``, ``"fp16"`` or ``"off"``.
        channels_last: Use the channels-last memory format (several times faster on the CPU).
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        threads: CPU threads for torch; None = the CPU cores available, divided among processes.
        num_workers: DataLoader worker processes.
        val_batch_size: Validation batch size; None = ``batch_size``.
        time_budget_s: Stop training (mid-epoch if need be) so that validation still fits in
            this many seconds from the start; None = no limit.
        tune: Tune per-class threshold and minimum area on each validation pass.
        tune_thresholds: Threshold grid.
        tune_min_areas: Minimum-area grid in pixels for 256×1600 images (scaled to the
            validation image size).
        max_train_images, max_val_images: Use only the first N images of each split (quick runs).
        progress: Show tqdm progress bars (rank 0 only).
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    crop_width: int | None = None
    only_defects: bool = True
    class_balance: float = 0.0
    dice_mode: str = "global"
    lr_schedule: str = "constant"
    val_fraction: float = 0.15
    flips: bool = False
    seed: int = 0
    architecture: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_ARCHITECTURE))
    mean: float | None = None
    std: float | None = None
    amp: str = "auto"
    channels_last: bool = True
    device: str = "auto"
    threads: int | None = None
    num_workers: int = 0
    val_batch_size: int | None = None
    time_budget_s: float | None = None
    tune: bool = True
    tune_thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    tune_min_areas: tuple[int, ...] = DEFAULT_MIN_AREAS
    max_train_images: int | None = None
    max_val_images: int | None = None
    progress: bool = True

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the first bad field and its value."""

        def positive_int(name: str, value: object, allow_none: bool = False) -> None:
            if not (value is None and allow_none):
                check_positive_int(name, value)

        positive_int("epochs", self.epochs)
        positive_int("batch_size", self.batch_size)
        positive_int("val_batch_size", self.val_batch_size, allow_none=True)
        positive_int("threads", self.threads, allow_none=True)
        positive_int("max_train_images", self.max_train_images, allow_none=True)
        positive_int("max_val_images", self.max_val_images, allow_none=True)
        check_int("num_workers", self.num_workers, low=0)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.crop_width is not None and check_int("crop_width", self.crop_width, low=1) % 32:
            raise ValueError(
                f"crop_width must be a positive multiple of 32 or None, got {self.crop_width!r}"
            )
        if not isinstance(self.val_fraction, (int, float)) or not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        check_amp(self.amp)
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if isinstance(self.class_balance, bool) or not isinstance(self.class_balance, (int, float)) or not (
            0 <= self.class_balance <= 4
        ):
            raise ValueError(f"class_balance must be a number in [0, 4], got {self.class_balance!r}")
        if self.dice_mode not in ("global", "class", "pair"):
            raise ValueError(f"dice_mode must be 'global', 'class' or 'pair', got {self.dice_mode!r}")
        if self.time_budget_s is not None and not (
            isinstance(self.time_budget_s, (int, float)) and self.time_budget_s > 0
        ):
            raise ValueError(
                f"time_budget_s must be a positive number or None, got {self.time_budget_s!r}"
            )
        if not isinstance(self.architecture, dict):
            raise TypeError(
                f"architecture must be a dict of UNet arguments, got {self.architecture!r}"
            )
        if self.std is not None and not self.std > 0:
            raise ValueError(f"std must be > 0, got {self.std!r}")
        check_int("seed", self.seed, low=0)


@dataclass
class TrainData:
    """Datasets and truth for one run (see :func:`load_data`).

    Attributes:
        train: Training dataset (crops, flips as configured).
        val: Validation dataset (full images, no augmentation), in ``val_ids`` order.
        val_truth: Labels of the validation images (ImageId, ClassId, EncodedPixels, hasMask).
        val_ids: Validation image ids.
        summary: JSON-ready description of the data (stored in the checkpoint).
        train_weights: Sampling weights of the training images (``class_balance`` > 0), or None.
    """

    train: Any
    val: Any
    val_truth: pd.DataFrame
    val_ids: list[str]
    summary: dict[str, Any]
    train_weights: np.ndarray | None = None


@dataclass
class EvalResult:
    """One validation pass (see :func:`evaluate`).

    Attributes:
        loss: Mean BCE + soft Dice loss.
        soft_dice: Soft Dice per class over the whole set, averaged over classes.
        score: Competition score (mean Dice over all pairs) from the RLE path.
        report: :func:`steelfast.metrics.kaggle_score_report` table (per class and ``"all"``).
        stats: Threshold statistics for tuning (None unless requested).
        images: Number of images.
        seconds: Wall time of the pass.
    """

    loss: float
    soft_dice: float
    score: float
    report: pd.DataFrame
    stats: ThresholdStats | None
    images: int
    seconds: float

    def class_scores(self) -> list[float]:
        """Competition Dice per class (ClassId 1..4 order)."""
        return [float(self.report.loc[c, "dice"]) for c in CLASSES if c in self.report.index]


@dataclass
class TrainResult:
    """Outcome of :func:`train` (on every rank; paths are written by rank 0).

    Attributes:
        out_dir: Run folder.
        best_path: ``best.safetensors`` (None if no epoch finished).
        last_path: ``last.safetensors``.
        history: One dict per epoch (the rows of ``history.csv``).
        best_epoch: 1-based epoch of the best checkpoint.
        postprocess: ``{"thresholds", "min_areas"}`` stored in the best checkpoint.
        final: Validation of the best checkpoint with its post-processing (rank 0), or None.
        images_per_s: Training throughput over the whole run (all processes).
        rank: This process's rank (0 when not distributed); only rank 0 writes files.
    """

    out_dir: Path
    best_path: Path | None
    last_path: Path | None
    history: list[dict[str, Any]]
    best_epoch: int | None
    postprocess: dict[str, list]
    final: dict[str, Any] | None
    images_per_s: float
    rank: int = 0


