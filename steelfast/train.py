"""Train the U-Net on a Kaggle-layout folder (``train.csv`` + ``train_images/``).

Flow: labels + image list -> stratified train/validation split ->
:class:`~steelfast.dataset.SteelDataset`
-> model (channels_last, bfloat16 autocast on the CPU / float16 on CUDA) -> BCE + soft Dice ->
Adam. After every epoch, rank 0 validates on the full-size validation images:

* validation loss and soft Dice;
* the **competition score** (mean Dice over all (image, class) pairs, defect-free images included):
  probabilities -> :func:`steelfast.rle.encode_probs` -> RLE ->
  :func:`steelfast.metrics.kaggle_score_report`
  (compiled), at threshold 0.5 and no minimum area, per class too;
* the same score after tuning the per-class threshold and minimum area on this validation pass
  (:mod:`steelfast.tune`); the best checkpoint is chosen on it and stores the tuned parameters.

Files in ``out_dir`` (written by rank 0 only, each atomically):

* ``best.safetensors`` + ``best.json``: best epoch, with tuned post-processing (inference default);
* ``last.safetensors`` + ``last.json`` + ``last.state.pt``: latest epoch, for ``resume``;
  a Ctrl-C also writes these before the ``KeyboardInterrupt`` propagates (its message says
  how to resume; nothing is printed);
* ``history.csv`` and ``history.png`` (Dice per epoch, train and validation).

A fixed ``seed`` gives the same run (same split, initial weights, order and augmentations) on the
same machine and thread count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from steelfast.checkpoint import (
    load_checkpoint,
    load_training_state,
    save_checkpoint,
    save_training_state,
    state_path_for,
    unwrap_model,
)
from steelfast.distributed import (
    DistInfo,
    EpochDistributedSampler,
    all_true,
    broadcast_object,
    init_from_env,
)
from steelfast.losses import bce_dice_loss
from steelfast.models import UNet, build_model
from steelfast.tune import (
    DEFAULT_MIN_AREAS,
    DEFAULT_THRESHOLDS,
    ThresholdStats,
    scaled_min_areas,
    tune_postprocess,
)

__all__ = [
    "EvalResult",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "autocast_dtype",
    "evaluate",
    "load_data",
    "resolve_device",
    "train",
]

CLASSES = (1, 2, 3, 4)
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
            ``power`` of :func:`steelfast.dataset.balanced_weights` (0 = every image once per
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
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

        positive_int("epochs", self.epochs)
        positive_int("batch_size", self.batch_size)
        positive_int("val_batch_size", self.val_batch_size, allow_none=True)
        positive_int("threads", self.threads, allow_none=True)
        positive_int("max_train_images", self.max_train_images, allow_none=True)
        positive_int("max_val_images", self.max_val_images, allow_none=True)
        if (
            isinstance(self.num_workers, bool)
            or not isinstance(self.num_workers, int)
            or self.num_workers < 0
        ):
            raise ValueError(f"num_workers must be an int >= 0, got {self.num_workers!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.crop_width is not None and (
            isinstance(self.crop_width, bool)
            or not isinstance(self.crop_width, int)
            or self.crop_width < 32
            or self.crop_width % 32
        ):
            raise ValueError(
                f"crop_width must be a positive multiple of 32 or None, got {self.crop_width!r}"
            )
        if not isinstance(self.val_fraction, (int, float)) or not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {self.amp!r}")
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
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")


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


# ---- helpers ----------------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is checked and returned."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be a CPU or CUDA device, got {device!r}")
    return dev


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None = full float32).

    ``"auto"`` picks float16 on CUDA and bfloat16 on CPUs with native bfloat16 instructions
    (AVX512-BF16 or AMX); elsewhere float32.
    """
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("amp='fp16' needs a CUDA device; use 'bf16' or 'off' on the CPU")
        return torch.float16
    if device.type == "cuda":
        return torch.float16
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    native = (check() if check else True) or (amx() if amx else False)
    return torch.bfloat16 if native else None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _progress(iterable: Iterable, enabled: bool, **kwargs: Any) -> Iterable:
    return tqdm(iterable, disable=not enabled, dynamic_ncols=True, leave=False, **kwargs)


# ---- data -------------------------------------------------------------------------------------


def load_data(
    data_dir: str | os.PathLike[str], config: TrainConfig, *, labels_file: str = "train.csv"
) -> TrainData:
    """Read a Kaggle-layout folder and build the train and validation datasets.

    Args:
        data_dir: Folder with ``train.csv`` (old or new format) and ``train_images/``.
        config: Split, crop, flip, normalisation and subset options.
        labels_file: Label file name inside ``data_dir``.

    Returns:
        A :class:`TrainData`.

    Raises:
        FileNotFoundError: Missing folder, label file or image folder.
        ValueError: No images, or a split that leaves no training or no validation images.
    """
    from steelfast.dataset import (
        DEFAULT_MEAN,
        DEFAULT_STD,
        SteelDataset,
        balanced_weights,
        class_presence,
        train_val_split,
        with_defects,
    )
    from steelfast.images import list_images
    from steelfast.labels import read_labels

    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} not found")
    labels_path = root / labels_file
    image_dir = root / "train_images"
    if not labels_path.is_file():
        raise FileNotFoundError(
            f"label file {str(labels_path)!r} not found (expected the Kaggle layout)"
        )
    if not image_dir.is_dir():
        raise FileNotFoundError(
            f"image folder {str(image_dir)!r} not found (expected the Kaggle layout)"
        )
    image_ids = [p.name for p in list_images(image_dir)]
    if not image_ids:
        raise ValueError(f"no images in {image_dir}")
    labels = read_labels(labels_path, images=image_ids)
    labels = labels[labels["ImageId"].isin(set(image_ids))].reset_index(drop=True)
    train_ids, val_ids = train_val_split(labels, image_ids, config.val_fraction, seed=config.seed)
    all_train = len(train_ids)
    if config.only_defects:
        train_ids = with_defects(labels, train_ids)
    if config.max_train_images is not None:
        train_ids = train_ids[: config.max_train_images]
    if config.max_val_images is not None:
        val_ids = val_ids[: config.max_val_images]
    if not train_ids or not val_ids:
        raise ValueError(
            f"{root}: the split left {len(train_ids)} training and {len(val_ids)} validation "
            f"images (of {len(image_ids)}; val_fraction={config.val_fraction}, "
            f"only_defects={config.only_defects})"
        )
    mean = DEFAULT_MEAN if config.mean is None else float(config.mean)
    std = DEFAULT_STD if config.std is None else float(config.std)
    channels = int(config.architecture.get("in_channels", 3))
    common = {"channels": channels, "mean": mean, "std": std, "seed": config.seed}
    train_ds = SteelDataset(
        image_dir, labels, train_ids, crop_width=config.crop_width, flips=config.flips, **common
    )
    val_ds = SteelDataset(image_dir, labels, val_ids, crop_width=None, flips=False, **common)
    presence = class_presence(labels, train_ids)
    val_presence = class_presence(labels, val_ids)
    summary = {
        "data_dir": str(root.resolve()),
        "images": len(image_ids),
        "train_images": len(train_ids),
        "train_images_before_filter": all_train,
        "val_images": len(val_ids),
        "train_images_per_class": {str(c): int(presence[:, c - 1].sum()) for c in CLASSES},
        "train_defect_free_images": int((~presence.any(axis=1)).sum()),
        "val_images_per_class": {str(c): int(val_presence[:, c - 1].sum()) for c in CLASSES},
        "val_defect_free_images": int((~val_presence.any(axis=1)).sum()),
        "normalization": {"mean": mean, "std": std},
        "class_balance": config.class_balance,
    }
    val_truth = labels[labels["ImageId"].isin(set(val_ids))].reset_index(drop=True)
    weights = balanced_weights(presence, config.class_balance) if config.class_balance > 0 else None
    return TrainData(train_ds, val_ds, val_truth, list(val_ids), summary, weights)


# ---- evaluation -------------------------------------------------------------------------------


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
        stats_thresholds: If given, also collect :class:`~steelfast.tune.ThresholdStats` on this
            grid for post-processing tuning.
        num_workers: DataLoader workers.
        progress: Show a progress bar.

    Returns:
        An :class:`EvalResult`.
    """
    from torch.utils.data import DataLoader

    from steelfast.metrics import kaggle_score_report
    from steelfast.rle import encode_probs

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
        for x, y in _progress(loader, progress, desc="validate", unit="batch"):
            x = _to_device(x, dev, channels_last)
            y = y.to(dev)
            with _autocast(dev, dtype):
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


# ---- history ----------------------------------------------------------------------------------


def _write_history(out_dir: Path, history: list[dict[str, Any]]) -> None:
    from steelfast._atomic import atomic_path

    frame = pd.DataFrame(history)
    with atomic_path(out_dir / "history.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    _plot_history(out_dir / "history.png", frame)


def _plot_history(path: Path, frame: pd.DataFrame) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from steelfast._atomic import atomic_path

    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    epochs = frame["epoch"]
    series = [
        ("train_dice", "train soft Dice", "-o"),
        ("val_dice", "validation soft Dice", "-o"),
        ("val_score", "validation score (0.5, no min area)", "--s"),
        ("val_score_tuned", "validation score (tuned post-processing)", "--^"),
    ]
    for column, label, style in series:
        if column in frame and frame[column].notna().any():
            ax.plot(epochs, frame[column], style, label=label, markersize=4)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Dice per epoch")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


# ---- training ---------------------------------------------------------------------------------


def _make_train_loader(data: TrainData, cfg: TrainConfig, info: DistInfo) -> Any:
    from torch.utils.data import DataLoader

    from steelfast.dataset import make_loader

    if not info.distributed:
        return make_loader(
            data.train,
            batch_size=cfg.batch_size,
            shuffle=True,
            num_workers=cfg.num_workers,
            seed=cfg.seed,
            weights=data.train_weights,
        )
    sampler = EpochDistributedSampler(
        data.train,
        num_replicas=info.world_size,
        rank=info.rank,
        shuffle=True,
        seed=cfg.seed,
        drop_last=False,
        weights=data.train_weights,
    )
    return DataLoader(
        data.train, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers
    )


def _set_epoch(loader: Any, epoch: int) -> None:
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    elif hasattr(sampler, "epoch"):
        sampler.epoch = epoch  # steelfast.dataset.EpochSampler: order and augmentations follow it


def _build_or_resume(cfg: TrainConfig, resume: str | os.PathLike[str] | None):
    if resume is None:
        torch.manual_seed(cfg.seed)
        return build_model(dict(cfg.architecture)), None, None
    model, meta = load_checkpoint(resume, map_location="cpu")
    # Restores the torch/NumPy/Python RNG states too: the run continues as if never stopped.
    state = load_training_state(state_path_for(resume), restore_rng=True)
    return model, meta, state


def train(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    data: TrainData | None = None,
    epoch_log: Callable[[str], object] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train, validate every epoch, tune post-processing and write checkpoints.

    Args:
        data_dir: Kaggle-layout folder (``train.csv``, ``train_images/``).
        out_dir: Run folder (created); see the module docstring for its files.
        config: Options; fields can also be given as keyword overrides
            (``train(d, o, epochs=3, crop_width=512)``).
        resume: A ``last.safetensors`` (or any checkpoint with its ``.state.pt``) to continue
            from: weights, optimiser, epoch, history, best score and RNG states are restored.
        data: Pre-built datasets (skips reading ``data_dir``; used by tests and benchmarks).
        epoch_log: Called on rank 0 after every epoch with one line: epoch, training loss,
            validation loss, soft Dice and score (tuned too), images/s and the epoch's seconds
            (training + validation). Default: the line goes to ``tqdm.write`` when
            ``progress`` is on and nowhere otherwise; ``print`` shows it without bars.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError, TypeError: Bad options (the message names the field and value).
        FileNotFoundError: Missing data or resume files.
        KeyboardInterrupt: After saving ``last.*`` on Ctrl-C.
    """
    cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    cfg.validate()
    device = resolve_device(cfg.device)
    info = init_from_env(device.type)
    if not info.initialized_here:
        return _train(Path(data_dir), Path(out_dir), cfg, device, info, resume, data, epoch_log)
    import torch.distributed as dist

    try:
        result = _train(Path(data_dir), Path(out_dir), cfg, device, info, resume, data, epoch_log)
        # Leave together: a rank tearing down its gloo connections while a peer still uses them
        # makes the peer abort.
        dist.barrier()
        return result
    finally:
        dist.destroy_process_group()


def _train(
    data_dir: Path,
    out_dir: Path,
    cfg: TrainConfig,
    device: torch.device,
    info: DistInfo,
    resume: str | os.PathLike[str] | None,
    data: TrainData | None,
    epoch_log: Callable[[str], object] | None = None,
) -> TrainResult:
    start_time = time.perf_counter()
    if epoch_log is None and cfg.progress:
        epoch_log = tqdm.write
    if device.type == "cuda" and info.distributed:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or max(1, _cpu_count() // info.world_size))
    _seed_all(cfg.seed)
    dtype = autocast_dtype(cfg.amp, device)
    show = cfg.progress and info.is_main

    model, resume_meta, state = _build_or_resume(cfg, resume)
    if resume_meta is not None:
        cfg = dataclasses.replace(cfg, architecture=dict(resume_meta["architecture"]))
        norm = resume_meta["normalization"]
        cfg = dataclasses.replace(cfg, mean=norm["mean"], std=norm["std"])
    if data is None:
        data = load_data(data_dir, cfg)
    summary = dict(data.summary)

    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler(
        "cuda", enabled=(device.type == "cuda" and dtype == torch.float16)
    )

    history: list[dict[str, Any]] = []
    first_epoch = 0
    best_score = -math.inf
    best_epoch: int | None = None
    best_post: dict[str, list] = {"thresholds": [0.5] * 4, "min_areas": [0] * 4}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history = list(state.get("history", []))
        first_epoch = int(state["epoch"])
        best_score = float(state.get("best_score", -math.inf))
        best_epoch = state.get("best_epoch")
        best_post = state.get("best_postprocess", best_post)

    net = model
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    loader = _make_train_loader(data, cfg, info)
    val_bs = cfg.val_batch_size or cfg.batch_size
    sample_image, _ = data.val[0]
    val_shape = (int(sample_image.shape[1]), int(sample_image.shape[2]))
    min_area_grid = scaled_min_areas(val_shape, cfg.tune_min_areas)
    # Validation images are full width; training images may be crops.
    val_cost = len(data.val) * val_shape[1] / (cfg.crop_width or val_shape[1])
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    best_path, last_path = out_dir / "best.safetensors", out_dir / "last.safetensors"

    def metadata(post: dict[str, list], extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "input": {
                "height": val_shape[0],
                "width": val_shape[1],
                "channels": int(model.config["in_channels"]),
            },
            "normalization": dict(summary["normalization"]),
            "postprocess": post,
            "training": {
                "data": summary,
                "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "progress"},
                "world_size": info.world_size,
                "device": str(device),
                "autocast": str(dtype).replace("torch.", "") if dtype else "float32",
                **extra,
            },
        }

    def save_last(epoch_done: int, note: str) -> None:
        save_checkpoint(
            last_path, model, metadata(best_post, {"epochs_done": epoch_done, "note": note})
        )
        save_training_state(
            state_path_for(last_path),
            {
                "epoch": epoch_done,
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                "history": history,
                "best_score": best_score,
                "best_epoch": best_epoch,
                "best_postprocess": best_post,
            },
        )

    train_images_total = 0
    train_seconds_total = 0.0
    val_seconds_est: float | None = None
    epoch = first_epoch
    try:
        for epoch in range(first_epoch, cfg.epochs):
            row, stop = _train_epoch(
                net,
                loader,
                optimizer,
                scaler,
                cfg,
                device,
                dtype,
                info,
                epoch,
                show,
                start_time,
                val_seconds_est,
                val_cost,
            )
            train_images_total += row["train_images"]
            train_seconds_total += row["train_seconds"]
            improved = False
            if info.is_main:
                ev = evaluate(
                    model,
                    data.val,
                    data.val_truth,
                    data.val_ids,
                    batch_size=val_bs,
                    device=device,
                    amp=cfg.amp,
                    channels_last=cfg.channels_last,
                    stats_thresholds=cfg.tune_thresholds if cfg.tune else None,
                    num_workers=cfg.num_workers,
                    progress=show,
                )
                val_seconds_est = ev.seconds
                row.update(val_loss=ev.loss, val_dice=ev.soft_dice, val_score=ev.score)
                for c, s in zip(CLASSES, ev.class_scores()):
                    row[f"val_score_c{c}"] = s
                post = {"thresholds": [0.5] * 4, "min_areas": [0] * 4}
                score = ev.score
                if ev.stats is not None:
                    tuned = tune_postprocess(stats=ev.stats, min_areas=min_area_grid)
                    post = {"thresholds": tuned.thresholds, "min_areas": tuned.min_areas}
                    score = tuned.score
                    row["val_score_tuned"] = tuned.score
                    for c, s in zip(CLASSES, tuned.class_dice):
                        row[f"val_score_tuned_c{c}"] = s
                row["val_seconds"] = ev.seconds
                history.append(row)
                improved = score > best_score
                if improved:
                    best_score, best_epoch, best_post = score, epoch + 1, post
                    save_checkpoint(
                        best_path, model, metadata(post, {"epoch": epoch + 1, "history": history})
                    )
                save_last(epoch + 1, "end of epoch")
                _write_history(out_dir, history)
                if epoch_log is not None:
                    epoch_log(_epoch_line(row, cfg.epochs, improved))
            val_seconds_est = broadcast_object(val_seconds_est, info)  # type: ignore[assignment]
            if all_true(stop, info):
                break
    except KeyboardInterrupt as exc:
        if not info.is_main:
            raise
        save_last(epoch, "interrupted (Ctrl-C); the interrupted epoch restarts on resume")
        # The hint travels in the exception, not printed here: the CLI prints its own one line.
        raise KeyboardInterrupt(f"interrupted: saved {last_path} (resume with resume={str(last_path)!r})") from exc

    final = None
    if info.is_main and best_epoch is not None and best_path.is_file():
        best_model, _ = load_checkpoint(best_path, map_location=device)
        if cfg.channels_last:
            best_model = best_model.to(memory_format=torch.channels_last)
        ev = evaluate(
            best_model,
            data.val,
            data.val_truth,
            data.val_ids,
            thresholds=best_post["thresholds"],
            min_areas=best_post["min_areas"],
            batch_size=val_bs,
            device=device,
            amp=cfg.amp,
            channels_last=cfg.channels_last,
            num_workers=cfg.num_workers,
            progress=show,
        )
        final = _final_summary(ev, best_epoch)
        ips = train_images_total / train_seconds_total if train_seconds_total > 0 else 0.0
        final["train_images_per_s"] = ips * info.world_size
        save_checkpoint(
            best_path,
            best_model,
            metadata(best_post, {"epoch": best_epoch, "history": history, "validation": final}),
        )
    # Rank 0 validated and chose; every rank returns the same summary.
    final, history, best_epoch, best_post = broadcast_object(  # type: ignore[misc]
        (final, history, best_epoch, best_post), info
    )
    ips = train_images_total / train_seconds_total if train_seconds_total > 0 else 0.0
    return TrainResult(
        out_dir=out_dir,
        best_path=best_path if best_epoch is not None else None,
        last_path=last_path,
        history=history,
        best_epoch=best_epoch,
        postprocess=best_post,
        final=final,
        images_per_s=ips * info.world_size,
        rank=info.rank,
    )


def _final_summary(ev: EvalResult, best_epoch: int) -> dict[str, Any]:
    rep = ev.report
    per_class = {
        str(c): {
            "dice": float(rep.loc[c, "dice"]),
            "dice_defects": None
            if pd.isna(rep.loc[c, "dice_defects"])
            else float(rep.loc[c, "dice_defects"]),
            "truth_defects": int(rep.loc[c, "truth_defects"]),
            "pred_defects": int(rep.loc[c, "pred_defects"]),
        }
        for c in CLASSES
        if c in rep.index
    }
    dd = rep.loc["all", "dice_defects"]
    return {
        "best_epoch": best_epoch,
        "images": ev.images,
        "score": ev.score,
        "dice_defects": None if pd.isna(dd) else float(dd),
        "loss": ev.loss,
        "soft_dice": ev.soft_dice,
        "per_class": per_class,
    }


def _epoch_line(row: dict[str, Any], epochs: int, improved: bool) -> str:
    parts = [
        f"epoch {row['epoch']}/{epochs}",
        f"loss {row['train_loss']:.4f}",
        f"val_loss {row['val_loss']:.4f}",
        f"val_dice {row['val_dice']:.4f}",
        f"score {row['val_score']:.4f}",
    ]
    if "val_score_tuned" in row:
        parts.append(f"tuned {row['val_score_tuned']:.4f}")
    parts.append(f"{row['train_images_per_s']:.1f} img/s")
    parts.append(f"{row['train_seconds'] + row['val_seconds']:.1f} s")
    return "  ".join(parts) + ("  *best*" if improved else "")


def _train_epoch(
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
    _set_epoch(loader, epoch)
    loss_sum, images = 0.0, 0
    inter = psum = tsum = None
    stop = False
    t0 = time.perf_counter()
    bar = _progress(loader, show, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch")
    steps = max(len(loader), 1)
    for step, (x, y) in enumerate(bar):
        if cfg.lr_schedule == "cosine":
            if cfg.time_budget_s is not None:
                done = (time.perf_counter() - start_time) / cfg.time_budget_s
            else:
                done = (epoch + step / steps) / cfg.epochs
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(max(done, 0.0), 1.0)))
        x = _to_device(x, device, cfg.channels_last)
        y = y.to(device, non_blocking=True)
        with _autocast(device, dtype):
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
