"""The baseline U-Net for steel-defect segmentation.

The architecture is the Keras "U-Net starter" of the Severstal competition, rebuilt in PyTorch:

* encoder: five levels of two 3×3 same-padded convolutions (widths ``8, 16, 32, 64, 64``), each
  followed by a 2×2 max-pool (five poolings, so height and width must be divisible by 32);
* bottleneck: two 3×3 convolutions of width 128 at 1/32 resolution;
* decoder: five levels of a 2×2 stride-2 transposed convolution, concatenation with the encoder
  output of the same resolution (the skip), and two 3×3 convolutions (widths ``64, 32, 32, 16, 8``);
* head: a 1×1 convolution to 4 channels. The model returns **logits**; prediction applies the
  sigmoid.

With the defaults the model has 600,756 parameters and costs 4.30 G multiply-accumulates (MACs)
per 256×1600 image, i.e. **8.6 GFLOP counting one MAC as two floating-point operations** (the
convention of :class:`torch.utils.flop_counter.FlopCounterMode`; biases, activations and pooling
are not counted).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from steelfast._tracing import is_tracing
from steelfast._validate import check_positive_int
from steelfast.efficientnet import GatedUNet

__all__ = [
    "ACTIVATIONS", "UNet", "build_model", "count_parameters", "inference_graph", "required_multiple",
]

#: Activation names accepted by :class:`UNet`.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}


def _check_widths(name: str, widths: object, length: int | None) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(f"{name} must be a sequence of positive ints, got {widths!r}")
    out = []
    for w in widths:
        try:
            out.append(check_positive_int(name, w))
        except (TypeError, ValueError):
            raise ValueError(f"{name} must hold positive ints, got {tuple(widths)!r}") from None
    if length is None and not out:
        raise ValueError(f"{name} must not be empty, got {tuple(widths)!r}")
    if length is not None and len(out) != length:
        raise ValueError(
            f"{name} must have {length} entries (one per level), got {tuple(widths)!r}"
        )
    return tuple(out)


class _DoubleConv(nn.Sequential):
    """Two 3×3 same-padded convolutions, each followed by the activation."""

    def __init__(self, cin: int, cout: int, activation: type[nn.Module]) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            activation(),
            nn.Conv2d(cout, cout, 3, padding=1),
            activation(),
        )


class _Up(nn.Module):
    """2×2 stride-2 transposed convolution, skip concatenation, two 3×3 convolutions."""

    def __init__(self, cin: int, skip: int, cout: int, activation: type[nn.Module]) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv = _DoubleConv(cout + skip, cout, activation)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # Upsampled features first, then the skip: the Keras baseline's concatenation order.
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """U-Net returning per-class logits.

    Args:
        in_channels: Input channels (the grey image is replicated to this many channels).
        classes: Output channels, one per defect class.
        widths: Encoder widths, one per level; each level ends with a 2×2 max-pool.
        bottleneck: Width of the two convolutions at the lowest resolution.
        activation: One of ``"elu"``, ``"relu"``, ``"silu"``, ``"gelu"``.
        decoder_widths: Decoder widths from the lowest resolution up, one per encoder level.
            The default ``(64, 32, 32, 16, 8)`` is the baseline's.

    Input: float32 (or autocast dtype) tensor (N, in_channels, H, W) with H and W divisible by
    ``2 ** len(widths)`` (32 by default). Output: logits (N, classes, H, W), same dtype.

    Raises:
        ValueError: On a bad argument, or in ``forward`` on an input of the wrong rank, channel
            count or size (the message names the size to pad or crop to). The size check is
            skipped while tracing, scripting, compiling or exporting to ONNX.
    """

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 4,
        widths: Sequence[int] = (8, 16, 32, 64, 64),
        bottleneck: int = 128,
        activation: str = "elu",
        *,
        decoder_widths: Sequence[int] = (64, 32, 32, 16, 8),
    ) -> None:
        super().__init__()
        in_channels = check_positive_int("in_channels", in_channels)
        classes = check_positive_int("classes", classes)
        bottleneck = check_positive_int("bottleneck", bottleneck)
        widths = _check_widths("widths", widths, None)
        decoder_widths = _check_widths("decoder_widths", decoder_widths, len(widths))
        if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        act = ACTIVATIONS[activation.lower()]
        self.config: dict[str, Any] = {
            "name": "unet",
            "in_channels": in_channels,
            "classes": classes,
            "widths": list(widths),
            "bottleneck": bottleneck,
            "activation": activation.lower(),
            "decoder_widths": list(decoder_widths),
        }
        self.in_channels = in_channels
        self.classes = classes
        self.multiple = 2 ** len(widths)

        self.encoder = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.encoder.append(_DoubleConv(cin, w, act))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _DoubleConv(cin, bottleneck, act)
        self.decoder = nn.ModuleList()
        cin = bottleneck
        for skip, w in zip(reversed(widths), decoder_widths):
            self.decoder.append(_Up(cin, skip, w, act))
            cin = w
        self.head = nn.Conv2d(cin, classes, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases, the Keras defaults the baseline trained with.

        Without normalisation layers, PyTorch's default (He-uniform with a = √5) shrinks the
        signal through the 23 convolutions and training stalls at "predict nothing".
        """
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is (N, in_channels, H, W) with H, W multiples of 32."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"UNet expects a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(
                f"UNet expects a 4-D tensor (N, {self.in_channels}, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet was built for {self.in_channels} input channels, got shape {tuple(x.shape)}"
            )
        h, w = int(x.shape[2]), int(x.shape[3])
        m = self.multiple
        if h % m or w % m or h == 0 or w == 0:
            up_h, up_w = max(m, -(-h // m) * m), max(m, -(-w // m) * m)
            down_h, down_w = (h // m) * m, (w // m) * m
            crop = f" or crop to {down_h}×{down_w}" if down_h and down_w else ""
            raise ValueError(
                f"UNet needs height and width divisible by {m}, got {h}×{w}: "
                f"pad to {up_h}×{up_w}{crop}"
            )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Bottleneck features (N, bottleneck, H/32, W/32) and the skip features, finest first."""
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        return self.bottleneck(x), skips

    def decode(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Logits (N, classes, H, W) from :meth:`encode`'s output."""
        for up, skip in zip(self.decoder, reversed(skips)):
            x = up(x, skip)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes, H, W) for images (N, in_channels, H, W)."""
        if not is_tracing():
            self.check_input(x)
        return self.decode(*self.encode(x))


def build_model(config: dict[str, Any]) -> UNet:
    """Rebuild a model from :attr:`UNet.config` (as stored in checkpoint metadata).

    Args:
        config: Mapping with ``"name": "unet"`` and the keyword arguments of :class:`UNet`.

    Returns:
        A freshly initialised :class:`UNet`.

    Raises:
        ValueError: If the architecture name is unknown or an argument is invalid.
        TypeError: If ``config`` is not a mapping.
    """
    if not isinstance(config, dict):
        raise TypeError(f"model config must be a dict, got {type(config).__name__}")
    kwargs = dict(config)
    name = kwargs.pop("name", "unet")
    if name == "gated-effnet-lite0":
        gated = {"in_channels", "classes", "decoder_widths", "scale", "gate_thresholds"}
        unknown = sorted(set(kwargs) - gated)
        if unknown:
            raise ValueError(f"unknown GatedUNet config keys {unknown} in {config!r}")
        return GatedUNet(**kwargs)  # type: ignore[return-value]
    if name != "unet":
        raise ValueError(f"unknown architecture {name!r} (known: 'unet', 'gated-effnet-lite0')")
    allowed = {"in_channels", "classes", "widths", "bottleneck", "activation", "decoder_widths"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"unknown UNet config keys {unknown} in {config!r}")
    for key in ("widths", "decoder_widths"):
        if key in kwargs and isinstance(kwargs[key], list):
            kwargs[key] = tuple(kwargs[key])
    return UNet(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def required_multiple(model: nn.Module) -> int:
    """The number height and width must be divisible by (32 for the baseline)."""
    return int(getattr(model, "multiple", 32))


class _ExpELU(nn.Module):
    """ELU as ``where(x > 0, x, exp(min(x, 0)) - 1)``.

    The same function as :class:`torch.nn.ELU` (alpha 1); in float32 the two differ by at most
    about 1e-7 near zero. Compiled CPU kernels evaluate ``exp`` about twice as fast as ``expm1``,
    and the activations of the full-resolution levels are bound by that evaluation.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, x, torch.exp(torch.clamp(x, max=0)) - 1)


class _SplitUp(nn.Module):
    """:class:`_Up` with the concatenation folded into the first convolution.

    ``conv(cat([u, s]), W) == conv(u, W_u) + conv(s, W_s)``: summing two convolutions avoids
    writing and re-reading the concatenated tensor, whose channels-last copy is the slowest
    kernel of the compiled CPU graph at full resolution.
    """

    def __init__(self, up: _Up) -> None:
        super().__init__()
        first = up.conv[0]
        cu = up.up.out_channels
        self.up = up.up
        self.from_up = nn.Conv2d(cu, first.out_channels, 3, padding=1)
        self.from_skip = nn.Conv2d(first.in_channels - cu, first.out_channels, 3, padding=1, bias=False)
        with torch.no_grad():
            self.from_up.weight.copy_(first.weight[:, :cu])
            self.from_up.bias.copy_(first.bias)
            self.from_skip.weight.copy_(first.weight[:, cu:])
        self.rest = nn.Sequential(*list(up.conv)[1:])

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.rest(self.from_up(self.up(x)) + self.from_skip(skip))


def _swap_elu(module: nn.Module) -> None:
    for name, child in module.named_children():
        if type(child) is nn.ELU and child.alpha == 1.0:
            setattr(module, name, _ExpELU())
        else:
            _swap_elu(child)


def inference_graph(model: UNet) -> UNet:
    """An inference-only copy of ``model`` that computes the same function faster on the CPU.

    Two rewrites: each decoder level's skip concatenation becomes a sum of two convolutions
    (:class:`_SplitUp`), and ELU is evaluated through ``exp`` instead of ``expm1``
    (:class:`_ExpELU`). Outputs equal the original's to float32 rounding (measured max |Δlogit|
    ~1e-5 on the default model); :class:`steelfast.inference.backends.torch_backend.TorchBackend` uses it before
    ``torch.compile`` on the CPU. The copy shares no parameters with ``model`` and cannot be
    trained back into a checkpoint (its state-dict keys differ).

    Args:
        model: A :class:`UNet`.

    Returns:
        A new module in eval mode with the same ``config``, input check and output shape.

    Raises:
        TypeError: ``model`` is not a :class:`UNet`.
    """
    if not isinstance(model, UNet):
        raise TypeError(f"inference_graph expects a steelfast UNet, got {type(model).__name__}")
    fast = copy.deepcopy(model).eval()
    fast.decoder = nn.ModuleList(_SplitUp(up) for up in fast.decoder)
    _swap_elu(fast)
    return fast
