"""Tests for steelfast.losses: bounds, oracle values, and that training with them converges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steelfast.losses import bce_dice_loss, dice_loss, soft_dice
from steelfast.models import UNet


def _numpy_soft_dice(logits: np.ndarray, target: np.ndarray, smooth: float, mode: str) -> float:
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    axes = {"global": (0, 1, 2, 3), "class": (0, 2, 3), "pair": (2, 3)}[mode]
    inter = (p * target).sum(axes)
    total = p.sum(axes) + target.sum(axes)
    return float(((2 * inter + smooth) / (total + smooth)).mean())


def _numpy_bce(logits: np.ndarray, target: np.ndarray) -> float:
    x = logits.astype(np.float64)
    return float(np.mean(np.maximum(x, 0) - x * target + np.log1p(np.exp(-np.abs(x)))))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["global", "class", "pair"])
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_match_numpy_oracle(seed: int, mode: str, smooth: float) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (2, 4, 8, 16)).astype(np.float32)
    target = (rng.random((2, 4, 8, 16)) < 0.3).astype(np.float32)
    lt, tt = torch.from_numpy(logits), torch.from_numpy(target)
    want_dice = _numpy_soft_dice(logits, target, smooth, mode)
    assert soft_dice(lt, tt, smooth=smooth, mode=mode).item() == pytest.approx(want_dice, rel=1e-5)
    assert dice_loss(lt, tt, smooth=smooth, mode=mode).item() == pytest.approx(
        1 - want_dice, abs=1e-5
    )
    got = bce_dice_loss(lt, tt, smooth=smooth, mode=mode).item()
    assert got == pytest.approx(_numpy_bce(logits, target) + 1 - want_dice, rel=1e-5)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_losses_are_finite_and_non_negative_even_for_extreme_logits(
    scale: float, dtype: torch.dtype
) -> None:
    torch.manual_seed(0)
    logits = (torch.randn(3, 4, 16, 16) * scale).to(dtype)
    target = (torch.rand(3, 4, 16, 16) < 0.2).float()
    for loss in (dice_loss(logits, target), bce_dice_loss(logits, target)):
        assert loss.dtype == torch.float32
        assert torch.isfinite(loss)
        assert loss.item() >= 0.0
    assert dice_loss(logits, target).item() <= 1.0


def test_perfect_and_empty_predictions() -> None:
    target = torch.zeros(2, 4, 8, 8)
    target[0, 1, 2:5, 2:5] = 1
    perfect = torch.where(target > 0, 30.0, -30.0)
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    assert bce_dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    # Everything empty and predicted empty: Dice is 1 thanks to the smoothing term.
    assert dice_loss(
        torch.full((1, 4, 8, 8), -30.0), torch.zeros(1, 4, 8, 8)
    ).item() == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize(
    ("logits", "target", "error", "message"),
    [
        (
            torch.zeros(1, 4, 8),
            torch.zeros(1, 4, 8),
            ValueError,
            r"\(N, C, H, W\), got shape \(1, 4, 8\)",
        ),
        (torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 4), ValueError, "shapes differ"),
        (
            np.zeros((1, 4, 8, 8)),
            torch.zeros(1, 4, 8, 8),
            TypeError,
            "logits must be a torch.Tensor",
        ),
    ],
)
def test_bad_inputs(logits, target, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        bce_dice_loss(logits, target)


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode must be one of .* got 'batch'"):
        dice_loss(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8), mode="batch")


def test_bad_weights() -> None:
    with pytest.raises(ValueError, match="bce_weight must be >= 0, got -1"):
        bce_dice_loss(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8), bce_weight=-1)


def test_bce_dice_is_bounded_and_decreases_when_training_a_tiny_dataset() -> None:
    # Tiny "dataset": 4 images with bright rectangles; the defect class is channel 2.
    torch.manual_seed(0)
    x = torch.rand(4, 1, 32, 64) * 0.2
    y = torch.zeros(4, 4, 32, 64)
    for i in range(4):
        r, c = 4 + 3 * i, 8 + 9 * i
        x[i, 0, r : r + 10, c : c + 20] += 0.8
        y[i, 2, r : r + 10, c : c + 20] = 1
    model = UNet(in_channels=1, widths=(8, 8), decoder_widths=(8, 8), bottleneck=16)
    # channels_last: the fast CPU layout for these narrow convolutions.
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = bce_dice_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(0.0 <= v <= 2.0 for v in losses), losses
    assert losses[-1] < 0.5 * losses[0]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
