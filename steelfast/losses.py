"""Segmentation losses on logits: soft Dice and BCE + soft Dice.

Every reduction here is a **mean** (the analysis this replaces summed per-pixel terms and
reported losses like −2.6e23). Both losses are computed in float32 whatever the autocast dtype
of the logits, and never go below 0:

* :func:`dice_loss` is ``1 − soft Dice`` and lies in [0, 1]. By default (``mode="global"``, the Keras baseline's ``dice_coef``) the soft Dice pools every
  pixel of every class and image; ``"class"`` scores each class over the batch and ``"pair"``
  each (image, class) pair, then averages. Pooling matters with rare classes: a class absent
  from a batch has Dice ≈ 0 in the per-class modes until every one of its probabilities is ~0,
  which drives a fresh model to predict nothing (measured: it stalls there; pooled, it learns);
* :func:`bce_dice_loss` is ``mean per-pixel BCE + (1 − soft Dice)``. It lies in [0, 2] whenever
  the mean BCE is at most 1 (the model's average probability for the true label is at least
  1/e ≈ 0.37); an untrained model starts near ``ln 2 + 1 ≈ 1.69``. Mean BCE itself is not bounded
  above: logits that are confidently wrong everywhere give a large (but finite, non-negative)
  loss, which is what makes it a useful training signal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bce_dice_loss", "dice_loss", "soft_dice"]


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    for name, t in (("logits", logits), ("target", target)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if logits.ndim != 4:
        raise ValueError(f"logits must be (N, C, H, W), got shape {tuple(logits.shape)}")
    if logits.shape != target.shape:
        raise ValueError(
            f"logits and target shapes differ: {tuple(logits.shape)} vs {tuple(target.shape)}"
        )


_MODES = ("global", "class", "pair")


def soft_dice(
    logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0, mode: str = "global"
) -> torch.Tensor:
    """Soft Dice of ``sigmoid(logits)`` against ``target``.

    Args:
        logits: Float tensor (N, C, H, W), any floating dtype.
        target: Tensor (N, C, H, W) of 0/1 values (float or integer).
        smooth: Added to numerator and denominator; makes empty-vs-empty score 1.
        mode: ``"global"`` pools all pixels of all classes and images (the baseline's);
            ``"class"`` scores each class over the batch and averages the classes;
            ``"pair"`` scores each (image, class) pair and averages them, like the competition.

    Returns:
        Scalar float32 tensor in [0, 1].
    """
    _check(logits, target)
    if not smooth >= 0:
        raise ValueError(f"smooth must be >= 0, got {smooth!r}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    probs = torch.sigmoid(logits.float())
    target = target.float()
    dims = {"global": (0, 1, 2, 3), "class": (0, 2, 3), "pair": (2, 3)}[mode]
    inter = (probs * target).sum(dims)
    total = probs.sum(dims) + target.sum(dims)
    dice = (2.0 * inter + smooth) / (total + smooth).clamp_min(torch.finfo(torch.float32).tiny)
    return dice.mean()


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0, mode: str = "global"
) -> torch.Tensor:
    """``1 − soft_dice(logits, target)``: a scalar float32 tensor in [0, 1].

    Args:
        logits: Float tensor (N, C, H, W).
        target: 0/1 tensor (N, C, H, W).
        smooth: See :func:`soft_dice`.
        mode: See :func:`soft_dice`.

    Returns:
        Scalar float32 tensor.
    """
    return 1.0 - soft_dice(logits, target, smooth=smooth, mode=mode)


def bce_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    smooth: float = 1.0,
    mode: str = "global",
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
) -> torch.Tensor:
    """Mean per-pixel binary cross-entropy on logits plus soft Dice loss.

    Args:
        logits: Float tensor (N, C, H, W).
        target: 0/1 tensor (N, C, H, W).
        smooth: See :func:`soft_dice`.
        mode: See :func:`soft_dice`.
        bce_weight: Weight of the BCE term (>= 0).
        dice_weight: Weight of the Dice term (>= 0).

    Returns:
        Scalar float32 tensor, >= 0; in [0, 2] with unit weights while mean BCE <= 1.
    """
    _check(logits, target)
    for name, w in (("bce_weight", bce_weight), ("dice_weight", dice_weight)):
        if not w >= 0:
            raise ValueError(f"{name} must be >= 0, got {w!r}")
    target_f = target.float()
    # reduction="mean": one number per pixel, averaged - never a sum.
    bce = F.binary_cross_entropy_with_logits(logits.float(), target_f, reduction="mean")
    return bce_weight * bce + dice_weight * dice_loss(logits, target_f, smooth=smooth, mode=mode)
