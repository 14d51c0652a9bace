"""The U-Net trainer's data: a Kaggle-layout folder split into training and validation sets, and the
training loader (one process or DDP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from steelfast._io import PathLike
from steelfast.data.dataset import (
    SteelDataset,
    balanced_weights,
    class_presence,
    make_loader,
    train_val_split,
    with_defects,
)
from steelfast.images import list_images
from steelfast.labels import read_labels
from steelfast.severstal import CLASSES, DEFAULT_MEAN, DEFAULT_STD
from steelfast.training.config import TrainConfig, TrainData
from steelfast.training.distributed import DistInfo, EpochDistributedSampler

__all__ = ["load_data", "make_train_loader", "set_epoch"]


def load_data(
    data_dir: PathLike, config: TrainConfig, *, labels_file: str = "train.csv"
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


def make_train_loader(data: TrainData, cfg: TrainConfig, info: DistInfo) -> Any:
    """The training loader: one process (:func:`steelfast.data.dataset.make_loader`) or a DDP rank's share."""
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


def set_epoch(loader: Any, epoch: int) -> None:
    """Tell the loader's sampler the epoch (order and augmentations follow it)."""
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    elif hasattr(sampler, "epoch"):
        sampler.epoch = epoch  # steelfast.data.dataset.EpochSampler: order and augmentations follow it


