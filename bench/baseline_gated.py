"""The seed's baseline U-Net with a gate head, for the real cross-validation (``real_cv.py --arch unet``).

Images (N, 3, H, W) in; segmentation logits (N, 4, H, W) and per-class gate logits (N, 4) out, as
:meth:`steelfast.efficientnet.GatedUNet.forward_both` gives them, so that
:func:`steelfast.training.gated.train_gated` trains it with the same data, loss, augmentations and
schedule as the default model, and the CV tunes its gate and post-processing the same way.

The network is :class:`steelfast.models.UNet` with its defaults (widths 8-16-32-64-64, a 128
bottleneck, ELU, Glorot initialisation, full resolution, no pretrained weights); the gate is the
same head as the EfficientNet model's: global average and max pooling of the bottleneck, dropout
and one linear layer. It exists to compare architectures; it is not saved or shipped.
"""

from __future__ import annotations

import torch
from torch import nn

from steelfast.models import UNet

__all__ = ["GatedBaselineUNet"]


class GatedBaselineUNet(nn.Module):
    """:class:`~steelfast.models.UNet` (baseline widths) plus a per-class gate on its bottleneck."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.unet = UNet(in_channels=3, classes=classes)
        width = self.unet.config["bottleneck"]
        self.gate = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * width, classes))

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Segmentation logits (N, classes, H, W) and gate logits (N, classes)."""
        self.unet.check_input(x)
        deep, skips = self.unet.encode(x)
        gate = self.gate(torch.cat([deep.mean(dim=(2, 3)), deep.amax(dim=(2, 3))], dim=1))
        return self.unet.decode(deep, skips), gate
