"""Training data: a torch ``Dataset`` over an image folder and its labels, splits and loaders.

In: an image folder, a labels frame and image ids. Out: ``(image, mask)`` float32 tensors, and
DataLoaders that batch them.

Flow: file -> :func:`steelfast.images.read_gray` -> masks decoded from the RLE of that image ->
optional crop (width divisible by 32, preferring defects) -> optional flips ->
:func:`steelfast.images.to_model_input` (the same transform inference uses) -> tensors.

Randomness is deterministic: the crop and flips of sample ``i`` depend only on ``(seed, epoch, i)``.
:func:`make_loader` passes the epoch along with each index, so augmentations change every epoch and
do not depend on the number of workers or the order the samples are fetched in.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from steelfast import rle
from steelfast._io import PathLike
from steelfast._validate import check_int, check_positive_int, check_weights
from steelfast.images import read_gray, to_model_input
from steelfast.labels import defect_rows
from steelfast.severstal import DEFAULT_MEAN, DEFAULT_STD

__all__ = [
    "EpochSampler",
    "SteelDataset",
    "balanced_weights",
    "class_presence",
    "make_loader",
    "train_val_split",
    "with_defects",
]


def _check_ids(image_ids: Sequence[str]) -> list[str]:
    if isinstance(image_ids, (str, bytes)):
        raise TypeError(f"image_ids must be a sequence of file names, got the string {image_ids!r}")
    ids = [str(i) for i in image_ids]
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"image_ids has a duplicate: {i!r}")
        seen.add(i)
    return ids


def class_presence(labels: pd.DataFrame, image_ids: Sequence[str]) -> np.ndarray:
    """Which classes each image has.

    Args:
        labels: Labels frame with ImageId, ClassId, EncodedPixels (empty string = no defect).
        image_ids: Images to report, e.g. ``["0002cc93b.jpg", ...]``.

    Returns:
        np.ndarray: bool (N, 4); column c is ClassId c+1.
    """
    rows = defect_rows(labels)
    ids = _check_ids(image_ids)
    pos = {iid: k for k, iid in enumerate(ids)}
    out = np.zeros((len(ids), 4), dtype=bool)
    for iid, c in zip(rows["ImageId"], rows["ClassId"]):
        k = pos.get(iid)
        if k is not None:
            out[k, c - 1] = True
    return out


def balanced_weights(presence: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Sampling weights that draw images of rare classes more often.

    Each image's weight is ``max(frequency of each category it has) ** -power``, the categories being
    the four classes and "no defect", the frequency a category's share of the images. ``power=0`` is
    uniform sampling, ``1`` draws every category about equally often, ``0.5`` (square-root
    balancing) lies between.

    Args:
        presence: bool (N, 4) from :func:`class_presence`.
        power: Exponent >= 0.

    Returns:
        np.ndarray: float64 (N,), summing to 1.

    Raises:
        ValueError: ``presence`` is not (N, 4) with N >= 1, or ``power`` is negative.
    """
    presence = np.asarray(presence, dtype=bool)
    if presence.ndim != 2 or presence.shape[1] != 4 or presence.shape[0] == 0:
        raise ValueError(f"presence must be bool (N, 4) with N >= 1, got shape {presence.shape}")
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not power >= 0:
        raise ValueError(f"power must be a number >= 0, got {power!r}")
    has = np.column_stack([presence, ~presence.any(axis=1)])  # (N, 5): classes, then "no defect"
    freq = has.mean(axis=0)
    inverse = np.where(has, np.where(freq > 0, freq, 1.0) ** -float(power), 0.0)
    weights = inverse.max(axis=1)
    return weights / weights.sum()


def with_defects(labels: pd.DataFrame, image_ids: Sequence[str]) -> list[str]:
    """Keep the images that have at least one defect (the Kaggle baseline trained only on those).

    Args:
        labels: Labels frame (see :func:`class_presence`).
        image_ids: Candidate images.

    Returns:
        list[str]: The defective ones, in the input order.
    """
    ids = _check_ids(image_ids)
    keep = class_presence(labels, ids).any(axis=1)
    return [i for i, k in zip(ids, keep) if k]


def train_val_split(
    labels: pd.DataFrame,
    image_ids: Sequence[str],
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Split images into train and validation sets, stratified by class presence.

    The images are grouped by their set of classes ("none", "3", "3|4", ...), shuffled within each
    group, and every ``1/val_fraction``-th image of the concatenation goes to validation, so each
    group is split in proportion (within one image) and the total is ``round(N * val_fraction)``
    give or take one.

    Args:
        labels: Labels frame (see :func:`class_presence`).
        image_ids: All images to split (defect-free ones included).
        val_fraction: Share of images for validation, in (0, 1).
        seed: Random seed; the same seed gives the same split.

    Returns:
        (train_ids, val_ids): Two disjoint lists of image ids, each sorted.

    Raises:
        ValueError: ``val_fraction`` outside (0, 1), duplicate ids.
    """
    if not isinstance(val_fraction, (int, float)) or not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    ids = sorted(_check_ids(image_ids))
    if not ids:
        return [], []
    pres = class_presence(labels, ids)
    key = pres @ np.array([1, 2, 4, 8])  # one integer per class set
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(ids)), key))  # by class set, random within it
    f = float(val_fraction)
    u = rng.random()
    pos = np.arange(len(ids))
    is_val = np.floor((pos + 1) * f + u) > np.floor(pos * f + u)
    val = sorted(ids[i] for i in order[is_val])
    train = sorted(ids[i] for i in order[~is_val])
    return train, val


class SteelDataset(Dataset):
    """Images and 4-class masks for training a segmentation model.

    Args:
        image_dir: Folder with the images named by ``image_ids``.
        labels: Labels frame from :func:`steelfast.labels.read_labels` (ImageId, ClassId,
            EncodedPixels; rows with an empty EncodedPixels are ignored).
        image_ids: Images to serve, e.g. from :func:`train_val_split` or :func:`with_defects`.
        channels: Channels of the image tensor (the grey plane is replicated), >= 1.
        crop_width: Width of a random crop, a positive multiple of 32, or None for the full width.
        flips: Random horizontal and vertical flips (each with probability 1/2), applied to the image
            and the masks alike.
        mean: Normalization mean in 0..1 units.
        std: Normalization std in 0..1 units.
        seed: Seed of the augmentations.
        prefer_defects: Probability that a crop is placed over a defect (when the image has one):
            over a column of one of its classes, each class equally likely; otherwise the crop is
            uniform.

    Indexing with ``i`` or ``(i, epoch)`` returns ``(image, mask)``: image torch.float32
    (channels, H, W') and mask torch.float32 (4, H, W') of 0/1, W' = crop_width or the image width.

    Raises:
        TypeError: ``crop_width`` or ``channels`` is not an int.
        ValueError: bad ``crop_width``, ``channels`` or ``prefer_defects``.
        FileNotFoundError: an image of ``image_ids`` is not in ``image_dir``.
    """

    def __init__(
        self,
        image_dir: PathLike,
        labels: pd.DataFrame,
        image_ids: Sequence[str],
        *,
        channels: int = 3,
        crop_width: int | None = None,
        flips: bool = False,
        mean: float = DEFAULT_MEAN,
        std: float = DEFAULT_STD,
        seed: int = 0,
        prefer_defects: float = 0.75,
    ) -> None:
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.image_dir}")
        if crop_width is not None and check_int("crop_width", crop_width, low=1) % 32:
            raise ValueError(
                f"crop_width must be a positive multiple of 32 or None, got {crop_width!r}"
            )
        check_positive_int("channels", channels)
        if not isinstance(prefer_defects, (int, float)) or not 0.0 <= float(prefer_defects) <= 1.0:
            raise ValueError(
                f"prefer_defects must be a probability in [0, 1], got {prefer_defects!r}"
            )
        if not (std > 0):
            raise ValueError(f"std must be > 0, got {std!r}")
        self.image_ids = _check_ids(image_ids)
        missing = [i for i in self.image_ids if not (self.image_dir / i).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(self.image_ids)} images are not in {self.image_dir}, e.g. {missing[:3]}"
            )
        rows = defect_rows(labels)
        wanted = set(self.image_ids)
        self._rles: dict[str, list[str]] = {}
        for iid, c, enc in zip(rows["ImageId"], rows["ClassId"], rows["EncodedPixels"]):
            if iid in wanted:
                self._rles.setdefault(iid, [""] * 4)[c - 1] = enc
        self.channels = int(channels)
        self.crop_width = None if crop_width is None else int(crop_width)
        self.flips = bool(flips)
        self.mean = float(mean)
        self.std = float(std)
        self.seed = int(seed)
        self.prefer_defects = float(prefer_defects)

    def __len__(self) -> int:
        return len(self.image_ids)

    def masks(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        """The masks of image ``index``: uint8 (4, H, W) of 0/1."""
        out = np.zeros((4, *shape), dtype=np.uint8)
        iid = self.image_ids[index]
        for c, enc in enumerate(self._rles.get(iid, ())):
            if enc:
                try:
                    out[c] = rle.decode(enc, shape)
                except ValueError as exc:
                    raise ValueError(f"bad EncodedPixels for {iid} class {c + 1}: {exc}") from exc
        return out

    def _crop_x(self, rng: np.random.Generator, masks: np.ndarray, width: int) -> int:
        cw = self.crop_width or width
        if rng.random() < self.prefer_defects:
            # A class first, then one of its columns: small defects of a rare class would
            # otherwise almost never be cropped next to the large ones of a frequent class.
            present = np.flatnonzero(masks.any(axis=(1, 2)))
            if present.size:
                c = int(present[rng.integers(present.size)])
                cols = np.flatnonzero(masks[c].any(axis=0))
                xc = int(cols[rng.integers(cols.size)])
                lo, hi = max(0, xc - cw + 1), min(xc, width - cw)
                return int(rng.integers(lo, hi + 1))
        return int(rng.integers(0, width - cw + 1))

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        n = len(self.image_ids)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index %= n
        path = self.image_dir / self.image_ids[index]
        gray = read_gray(path)
        masks = self.masks(index, gray.shape)
        rng = np.random.default_rng((self.seed, int(epoch), index))
        if self.crop_width is not None:
            w = gray.shape[1]
            if self.crop_width > w:
                raise ValueError(f"crop_width {self.crop_width} is wider than {path} ({w} px)")
            x0 = self._crop_x(rng, masks, w)
            gray = gray[:, x0 : x0 + self.crop_width]
            masks = masks[:, :, x0 : x0 + self.crop_width]
        if self.flips:
            if rng.random() < 0.5:
                gray, masks = gray[:, ::-1], masks[:, :, ::-1]
            if rng.random() < 0.5:
                gray, masks = gray[::-1], masks[:, ::-1]
        image = to_model_input(np.ascontiguousarray(gray), self.mean, self.std, self.channels)[0]
        return torch.from_numpy(image), torch.from_numpy(masks.astype(np.float32))


class EpochSampler(Sampler):
    """Yields ``(index, epoch)`` pairs, reshuffled (with ``seed`` and the epoch) on every pass.

    The epoch counter advances each time the sampler is iterated, i.e. once per epoch of a
    DataLoader, which lets :class:`SteelDataset` vary its augmentations deterministically.
    With ``weights`` (e.g. :func:`balanced_weights`), each epoch draws ``n`` indices with
    replacement in proportion to them instead of a permutation.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0, weights: np.ndarray | None = None) -> None:
        self.n = int(n)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0
        self.weights = None if weights is None else check_weights(weights, self.n)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch += 1
        rng = np.random.default_rng((self.seed, epoch))
        if self.weights is not None:
            order = rng.choice(self.n, size=self.n, replace=True, p=self.weights)
        elif self.shuffle:
            order = rng.permutation(self.n)
        else:
            order = np.arange(self.n)
        return iter([(int(i), epoch) for i in order])


class _PlainSampler(EpochSampler):
    """:class:`EpochSampler` giving bare indices, for datasets other than :class:`SteelDataset`."""

    def __iter__(self) -> Iterator[int]:  # type: ignore[override]
        return iter([i for i, _ in super().__iter__()])


def make_loader(
    dataset: Dataset,
    batch_size: int = 32,
    shuffle: bool = True,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    weights: np.ndarray | None = None,
) -> DataLoader:
    """A DataLoader that reshuffles every epoch, deterministically for a seed.

    Args:
        dataset: Usually a :class:`SteelDataset`.
        batch_size: Samples per batch (>= 1).
        shuffle: Reshuffle the order every epoch.
        num_workers: Worker processes (0 = load in the main process).
        seed: Seed of the order (the augmentations use the dataset's own seed).
        drop_last: Drop the last incomplete batch.
        weights: Per-sample weights (N,): draw with replacement in proportion to them (see
            :func:`balanced_weights`); None = a permutation.

    Returns:
        DataLoader: yields ``(images float32 (B, C, H, W), masks float32 (B, 4, H, W))``.

    Raises:
        TypeError: ``batch_size`` or ``num_workers`` is not an int.
        ValueError: ``batch_size`` < 1, ``num_workers`` < 0, or ``weights`` not N non-negative numbers.
    """
    check_int("batch_size", batch_size, low=1)
    check_int("num_workers", num_workers, low=0)
    cls = EpochSampler if isinstance(dataset, SteelDataset) else _PlainSampler
    sampler = cls(len(dataset), shuffle=shuffle, seed=seed, weights=weights)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        sampler=sampler,
        num_workers=int(num_workers),
        drop_last=bool(drop_last),
        persistent_workers=False,
    )
