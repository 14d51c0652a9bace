"""Post-processing tuning: per-class probability threshold and minimum defect area.

Inference turns probabilities into masks with two per-class parameters (see
:func:`steelfast.rle.encode_probs`): a pixel is a defect where ``prob > thresholds[c]``, and a class
whose total defect area in the image is below ``min_areas[c]`` is emptied. The winning Severstal
solutions chose both on the validation set with a grid search; this module does that.

It is fast because the grid never touches pixels twice: one pass over the probabilities
(:class:`ThresholdStats`, streamed batch by batch during validation) records, for every
(image, class, threshold), the predicted area and its intersection with the truth. Every
(threshold, min area) pair of the grid is then scored from those counts alone, exactly as the
competition scores it: Dice ``2|A∩B| / (|A| + |B|)`` per (image, class) pair, 1 when both are empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steelfast._io import PathLike
from steelfast.images import read_gray
from steelfast.labels import build_masks
from steelfast.severstal import SHAPE

__all__ = [
    "DEFAULT_MIN_AREAS",
    "DEFAULT_THRESHOLDS",
    "ThresholdStats",
    "TuneResult",
    "pair_dice",
    "scaled_min_areas",
    "tune_on_images",
    "tune_postprocess",
]

#: Threshold grid, 0.30 to 0.70 in steps of 0.05.
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.3 + 0.05 * i, 2) for i in range(9))
#: Minimum-area grid in pixels for a Severstal image (:data:`steelfast.severstal.SHAPE`, 256×1600;
#: scale with :func:`scaled_min_areas`).
DEFAULT_MIN_AREAS: tuple[int, ...] = (0, 200, 600, 1000, 2000)


def scaled_min_areas(
    shape: tuple[int, int], areas: Sequence[int] = DEFAULT_MIN_AREAS
) -> tuple[int, ...]:
    """Scale a minimum-area grid given for 256×1600 images to images of ``shape`` (H, W).

    Returns:
        Sorted, de-duplicated ints (0 stays 0).
    """
    h, w = shape
    if h <= 0 or w <= 0:
        raise ValueError(f"shape must be positive (H, W), got {shape!r}")
    factor = (h * w) / (SHAPE[0] * SHAPE[1])
    return tuple(sorted({round(a * factor) for a in areas}))


def _check_grid(
    thresholds: Sequence[float], min_areas: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(list(thresholds), dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all((t >= 0) & (t < 1)) or np.any(np.diff(t) <= 0):
        raise ValueError(
            "thresholds must be a non-empty increasing sequence in [0, 1), "
            f"got {list(thresholds)!r}"
        )
    a = np.asarray(list(min_areas))
    if a.ndim != 1 or a.size == 0 or a.dtype.kind not in "iu" or np.any(a < 0):
        raise ValueError(
            f"min_areas must be a non-empty sequence of ints >= 0, got {list(min_areas)!r}"
        )
    return t, a.astype(np.int64)


class ThresholdStats:
    """Streaming per-(image, class, threshold) counts for post-processing search.

    Args:
        thresholds: Increasing thresholds in [0, 1).

    Attributes (after :meth:`update`):
        pred_area: int64 (N, C, T): pixels with ``prob > thresholds[t]``.
        inter: int64 (N, C, T): of those, pixels where the truth is set.
        truth_area: int64 (N, C): truth pixels.
    """

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> None:
        self.thresholds, _ = _check_grid(thresholds, [0])
        self._pred: list[np.ndarray] = []
        self._inter: list[np.ndarray] = []
        self._truth: list[np.ndarray] = []

    def update(self, probs: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray) -> None:
        """Add a batch.

        Args:
            probs: Probabilities (N, C, H, W), any float dtype, on any device.
            truth: 0/1 masks (N, C, H, W), any dtype, same shape.
        """
        p = torch.as_tensor(probs)
        y = torch.as_tensor(truth, device=p.device).contiguous()
        if p.ndim != 4 or p.shape != y.shape:
            raise ValueError(
                "probs and truth must both be (N, C, H, W); "
                f"got {tuple(p.shape)} and {tuple(y.shape)}"
            )
        if not p.is_floating_point():
            raise TypeError(f"probs must be floating point, got {p.dtype}")
        n, c = int(p.shape[0]), int(p.shape[1])
        n_t = len(self.thresholds)
        if n == 0:
            return
        # bucketize(right=False) gives, per pixel, k = #{thresholds < p}: the pixel counts as
        # a defect for exactly the first k thresholds. One histogram per (image, class) then
        # yields every threshold's area by a reverse cumulative sum.
        bounds = torch.as_tensor(self.thresholds, dtype=torch.float32, device=p.device)
        bins = torch.bucketize(p.float().contiguous(), bounds, right=False)
        offsets = torch.arange(n * c, device=p.device).view(n, c, 1, 1) * (n_t + 1)
        idx = (bins + offsets).flatten()
        pos = (y > 0).flatten()
        hist = torch.bincount(idx, minlength=n * c * (n_t + 1)).view(n, c, n_t + 1)
        hist_pos = torch.bincount(idx[pos], minlength=n * c * (n_t + 1)).view(n, c, n_t + 1)
        # area above threshold k = sum of bins k+1 .. T
        above = hist.flip(-1).cumsum(-1).flip(-1)[..., 1:]
        above_pos = hist_pos.flip(-1).cumsum(-1).flip(-1)[..., 1:]
        self._pred.append(above.cpu().numpy().astype(np.int64))
        self._inter.append(above_pos.cpu().numpy().astype(np.int64))
        self._truth.append(hist_pos.sum(-1).cpu().numpy().astype(np.int64))

    def _cat(self, parts: list[np.ndarray], tail: tuple[int, ...]) -> np.ndarray:
        if not parts:
            return np.zeros((0, *tail), dtype=np.int64)
        return np.concatenate(parts, axis=0)

    @property
    def pred_area(self) -> np.ndarray:
        return self._cat(self._pred, (0, len(self.thresholds)))

    @property
    def inter(self) -> np.ndarray:
        return self._cat(self._inter, (0, len(self.thresholds)))

    @property
    def truth_area(self) -> np.ndarray:
        return self._cat(self._truth, (0,))

    def __len__(self) -> int:
        return sum(len(p) for p in self._pred)


def pair_dice(
    pred_area: np.ndarray, inter: np.ndarray, truth_area: np.ndarray, min_area: int | np.ndarray
) -> np.ndarray:
    """Competition Dice per pair from counts, after the minimum-area rule.

    Args:
        pred_area: int (...,) predicted pixels at some threshold.
        inter: int (...,) intersection with the truth.
        truth_area: int (...,) truth pixels.
        min_area: A prediction with fewer pixels than this is emptied (broadcasts).

    Returns:
        float64 (...,) Dice; 1.0 where prediction (after the rule) and truth are both empty.
    """
    kept = pred_area >= min_area
    p = np.where(kept, pred_area, 0)
    i = np.where(kept, inter, 0)
    denom = p + truth_area
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom == 0, 1.0, 2.0 * i / np.maximum(denom, 1))


@dataclass
class TuneResult:
    """Best per-class post-processing parameters and the scores behind them.

    Attributes:
        thresholds: Best threshold per class.
        min_areas: Best minimum area per class.
        class_dice: Mean Dice per class over all images at the chosen parameters.
        score: Mean of ``class_dice`` (the competition score, all classes having N pairs).
        default_score: The competition score at threshold 0.5 and no minimum area (when 0.5 is on
            the grid; else at the grid's middle threshold).
        grid: float64 (C, T, A) mean Dice for every class, threshold and minimum area.
        grid_thresholds, grid_min_areas: The grid axes.
    """

    thresholds: list[float]
    min_areas: list[int]
    class_dice: list[float]
    score: float
    default_score: float
    grid: np.ndarray = field(repr=False)
    grid_thresholds: list[float] = field(default_factory=list)
    grid_min_areas: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the full grid)."""
        return {
            "thresholds": self.thresholds,
            "min_areas": self.min_areas,
            "class_dice": self.class_dice,
            "score": self.score,
            "default_score": self.default_score,
            "grid_thresholds": self.grid_thresholds,
            "grid_min_areas": self.grid_min_areas,
        }


def tune_postprocess(
    probs: torch.Tensor | np.ndarray | None = None,
    truth: torch.Tensor | np.ndarray | None = None,
    *,
    stats: ThresholdStats | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    min_areas: Sequence[int] | None = None,
) -> TuneResult:
    """Choose each class's threshold and minimum area to maximise its mean Dice over all images.

    Give either ``probs`` and ``truth`` or precomputed ``stats``. Ties go to the lower threshold
    and smaller minimum area (the first grid point), so the result is deterministic.

    Args:
        probs: Probabilities float (N, C, H, W).
        truth: 0/1 masks (N, C, H, W).
        stats: Counts from a validation pass (its thresholds are the grid's thresholds).
        thresholds: Threshold grid when ``probs`` is given.
        min_areas: Minimum-area grid in pixels; by default :data:`DEFAULT_MIN_AREAS` scaled to the
            image size of ``probs`` (or unscaled with ``stats``).

    Returns:
        A :class:`TuneResult`.

    Raises:
        ValueError: On an empty validation set, both or neither of probs/stats, or a bad grid.
    """
    if (stats is None) == (probs is None):
        raise ValueError("give either probs and truth, or stats (exactly one of them)")
    if stats is None:
        if truth is None:
            raise ValueError("truth is required with probs")
        p = torch.as_tensor(probs)
        stats = ThresholdStats(thresholds)
        stats.update(p, truth)
        if min_areas is None and p.ndim == 4:
            min_areas = scaled_min_areas((int(p.shape[2]), int(p.shape[3])))
    if min_areas is None:
        min_areas = DEFAULT_MIN_AREAS
    grid_t, grid_a = _check_grid(stats.thresholds, min_areas)
    if len(stats) == 0:
        raise ValueError("cannot tune post-processing on an empty validation set")
    pred, inter, truth_area = stats.pred_area, stats.inter, stats.truth_area
    # (N, C, T, A) Dice for every grid point, averaged over images -> (C, T, A)
    d = pair_dice(pred[..., None], inter[..., None], truth_area[..., None, None], grid_a)
    grid = d.mean(axis=0)
    n_classes = grid.shape[0]
    best_t, best_a, class_dice = [], [], []
    for c in range(n_classes):
        flat = int(np.argmax(grid[c]))  # first maximum: lowest threshold, then smallest area
        ti, ai = divmod(flat, len(grid_a))
        best_t.append(float(grid_t[ti]))
        best_a.append(int(grid_a[ai]))
        class_dice.append(float(grid[c, ti, ai]))
    near_half = int(np.argmin(np.abs(grid_t - 0.5)))
    default = pair_dice(pred[..., near_half], inter[..., near_half], truth_area, 0)
    return TuneResult(
        thresholds=best_t,
        min_areas=best_a,
        class_dice=class_dice,
        score=float(np.mean(class_dice)),
        default_score=float(default.mean()),
        grid=grid,
        grid_thresholds=[float(t) for t in grid_t],
        grid_min_areas=[int(a) for a in grid_a],
    )


def tune_on_images(
    segmenter: Any,
    image_dir: PathLike,
    labels: Any,
    image_ids: Sequence[str],
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    min_areas: Sequence[int] | None = None,
    progress: bool = False,
) -> TuneResult:
    """Tune post-processing on images exactly as a :class:`~steelfast.inference.segmenter.Segmenter` will see them.

    The probabilities come from ``segmenter.predict_proba``, so its backend, precision and flip
    TTA are the ones the parameters are tuned for (the trainer tunes on plain validation
    probabilities instead). Store the result with ``"tta": segmenter.tta`` in the checkpoint's
    ``postprocess`` so that inference uses the same setting.

    Args:
        segmenter: A :class:`~steelfast.inference.segmenter.Segmenter`.
        image_dir: Folder holding ``image_ids``.
        labels: Labels table (:func:`steelfast.labels.read_labels`) with those images' defects.
        image_ids: Images to tune on, all of one size (H, W).
        thresholds: Threshold grid.
        min_areas: Minimum-area grid; default :data:`DEFAULT_MIN_AREAS` scaled to the image size.
        progress: Show a progress bar.

    Returns:
        A :class:`TuneResult`.

    Raises:
        ValueError: No images, images of different sizes, or a bad grid.
        steelfast.images.ImageReadError: An image cannot be read (named in the message).
    """
    from tqdm import tqdm

    ids = list(image_ids)
    if not ids:
        raise ValueError("image_ids is empty: there is nothing to tune on")
    stats = ThresholdStats(thresholds)
    shape: tuple[int, int] | None = None
    step = max(1, int(segmenter.batch_size))
    for start in tqdm(range(0, len(ids), step), disable=not progress, desc="tune", unit="batch", leave=False):
        chunk = ids[start : start + step]
        grays = [read_gray(Path(image_dir) / image_id) for image_id in chunk]
        for idx, probs in segmenter.predict_proba(grays):
            for k, i in enumerate(idx):
                h, w = grays[i].shape
                if shape is None:
                    shape = (h, w)
                elif shape != (h, w):
                    raise ValueError(f"tune_on_images needs images of one size: {chunk[i]} is {h}x{w}, not {shape[0]}x{shape[1]}")
                truth = build_masks(labels, chunk[i], (h, w))
                stats.update(np.asarray(probs[k : k + 1, :, :h, :w], dtype=np.float32), truth[None])
    assert shape is not None
    return tune_postprocess(stats=stats, min_areas=scaled_min_areas(shape) if min_areas is None else min_areas)
