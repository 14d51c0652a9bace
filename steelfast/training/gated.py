"""Training the gated EfficientNet-Lite0 U-Net on real images with full and weak labels.

Flow: :class:`~steelfast.data.real.LabelledSet` → augmented full-size batches → model →
loss → trained :class:`~steelfast.efficientnet.GatedUNet`; and
:func:`predict_set`: images → raw segmentation probabilities and gate probabilities.

The loss has three parts:

* pixel BCE on every class map of a fully labelled image, and on the maps of the classes that a
  weakly labelled image is known **not** to have (all pixels negative); the maps of the classes
  it does have are left out, since their pixels are unknown;
* soft Dice per class over the fully labelled images of the batch;
* BCE of the gate logits against class presence, on every image whose presence trains the gate
  (``LabelledSet.gate``: all real images; synthetic ones unless they train the maps only),
  averaged over those images of the batch, so that ``gate_weight`` weighs the gate as it does in a
  batch of real images;
* with ``area_weight`` > 0, the weak labels' pixel areas (``LabelledSet.areas``) train the maps of
  the classes a weak image has: ``|log(1 + Σ p) − log(1 + area)|`` per such (image, class), the
  soft area of the map against the known one, averaged over the batch's known areas.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from steelfast._device import autocast, autocast_dtype, autocast_name, resolve_device
from steelfast._validate import check_amp, check_fraction, check_int, check_positive_int
from steelfast.data.augment import SteelAugment
from steelfast.data.real import LabelledSet
from steelfast.efficientnet import GatedUNet, load_imagenet_lite0
from steelfast.images import to_model_input

__all__ = ["GatedTrainConfig", "LEGACY_CONFIG", "NORMALIZATION", "predict_set", "train_gated"]

log = logging.getLogger(__name__)

#: Input normalisation of the ImageNet EfficientNet-Lite weights, in 0..1 units.
NORMALIZATION = {"mean": 0.5, "std": 0.5}
#: :class:`GatedTrainConfig` fields added since models and fold files were first saved, with the
#: value those trained with (a recorded config without them means these values).
LEGACY_CONFIG = {"amp": "off", "area_weight": 0.0}


@dataclass
class GatedTrainConfig:
    """Options of :func:`train_gated`.

    Attributes:
        epochs: Passes over the data (fully labelled images are seen ``full_repeat`` times each).
        batch_size: Images per step.
        lr: AdamW learning rate of the decoder and heads; the encoder gets ``lr * encoder_lr_scale``.
        encoder_lr_scale: Learning-rate factor of the pretrained encoder.
        weight_decay: AdamW weight decay.
        gate_weight: Weight of the gate loss.
        full_repeat: How often each fully labelled image appears per epoch.
        pretrained: Start the encoder from ImageNet weights (needs the ``pretrained`` extra).
        scale: Resolution factor of the network (see :class:`~steelfast.efficientnet.GatedUNet`).
        frozen_blocks: The stem and this many first encoder blocks keep their ImageNet weights
            (no gradient flows through the high-resolution layers, which saves most of the
            backward pass on a CPU). Encoder batch norms always keep their running statistics:
            batches of a few images estimate them badly.
        seed: Seed of weights, order and augmentations.
        threads: torch CPU threads (None: leave torch's setting).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``.
        amp: Autocast of the forward pass: ``"off"`` (float32, the shipped model's recipe),
            ``"auto"`` (float16 on CUDA, bfloat16 on CPUs with native bfloat16, else off),
            ``"bf16"`` or ``"fp16"`` (CUDA only, with loss scaling). The loss is computed in
            float32, and the weights stay float32 either way.
        area_weight: Weight of the area loss of weak images with known areas (see the module
            docstring; 0, the shipped model's recipe, leaves their present classes' maps untrained).
    """

    epochs: int = 30
    batch_size: int = 4
    lr: float = 1e-3
    encoder_lr_scale: float = 0.3
    weight_decay: float = 1e-4
    gate_weight: float = 0.5
    full_repeat: int = 2
    pretrained: bool = True
    scale: float = 0.5
    frozen_blocks: int = 1
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    amp: str = "off"
    area_weight: float = 0.0

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the bad field and its value."""
        for name in ("epochs", "batch_size", "full_repeat"):
            check_positive_int(name, getattr(self, name))
        for name in ("seed", "frozen_blocks"):
            check_int(name, getattr(self, name), low=0)
        check_fraction("lr", self.lr, low=1e-7, high=1.0)
        check_fraction("encoder_lr_scale", self.encoder_lr_scale, low=0.0, high=10.0)
        check_fraction("weight_decay", self.weight_decay, low=0.0, high=1.0)
        check_fraction("gate_weight", self.gate_weight, low=0.0, high=100.0)
        check_fraction("area_weight", self.area_weight, low=0.0, high=100.0)
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a str such as 'cpu' or 'cuda', got {self.device!r}")
        if not isinstance(self.amp, str):
            raise TypeError(f"amp must be a str ('auto', 'bf16', 'fp16' or 'off'), got {self.amp!r}")
        check_amp(self.amp)
        if self.amp == "fp16":
            autocast_dtype(self.amp, resolve_device(self.device))  # fp16 needs CUDA: say so before any work

    def resolved(self) -> dict[str, str]:
        """Where and in what precision :func:`train_gated` runs this config on this machine:
        ``{"device": "cpu" | "cuda" | ..., "autocast": "float32" | "bfloat16" | "float16"}``
        (``device="auto"`` and ``amp="auto"`` resolved, as the checkpoint records them).

        Raises:
            ValueError, TypeError: An invalid config.
        """
        self.validate()
        device = resolve_device(self.device)
        dtype = autocast_dtype(self.amp, device)
        return {"device": str(device), "autocast": autocast_name(dtype)}


def _batch_input(grays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(to_model_input(np.stack(grays), NORMALIZATION["mean"], NORMALIZATION["std"], 3))


def _loss(
    seg: torch.Tensor, gate: torch.Tensor, masks: torch.Tensor, pixel_weight: torch.Tensor,
    presence: torch.Tensor, full: torch.Tensor, gate_weight: float, gated: torch.Tensor | None = None,
    areas: torch.Tensor | None = None, area_weight: float = 0.0,
) -> torch.Tensor:
    """The loss of the module docstring; shapes (N, C, H, W), (N, C), (N,); ``gated`` (N,) bool
    marks the images whose presence trains the gate (None: all); ``areas`` (N, C) holds the known
    pixel areas of weak images' present classes (NaN elsewhere; None: none known)."""
    bce = F.binary_cross_entropy_with_logits(seg, masks, reduction="none").mean(dim=(2, 3))
    pix = (bce * pixel_weight).sum() / pixel_weight.sum().clamp_min(1.0)
    if gated is None or bool(gated.all()):
        loss = pix + gate_weight * F.binary_cross_entropy_with_logits(gate, presence)
    elif bool(gated.any()):
        loss = pix + gate_weight * F.binary_cross_entropy_with_logits(gate[gated], presence[gated])
    else:  # a batch of maps-only images: the gate head is not trained on it
        loss = pix
    if bool(full.any()):
        p = torch.sigmoid(seg[full])
        t = masks[full]
        inter = (p * t).sum(dim=(0, 2, 3))
        denom = p.sum(dim=(0, 2, 3)) + t.sum(dim=(0, 2, 3))
        has = t.sum(dim=(0, 2, 3)) > 0
        if bool(has.any()):
            loss = loss + (1 - (2 * inter[has] + 1) / (denom[has] + 1)).mean()
    if area_weight > 0 and areas is not None:
        known = torch.isfinite(areas) & (areas > 0) & presence.bool() & ~full[:, None]
        if bool(known.any()):
            soft = torch.sigmoid(seg).sum(dim=(2, 3))
            loss = loss + area_weight * (torch.log1p(soft[known]) - torch.log1p(areas[known])).abs().mean()
    return loss


def train_gated(
    data: LabelledSet,
    config: GatedTrainConfig | None = None,
    *,
    model: torch.nn.Module | None = None,
    progress: Callable[[str], None] | None = None,
) -> GatedUNet:
    """Train a :class:`~steelfast.efficientnet.GatedUNet` on ``data`` (on ``config.device``).

    Args:
        data: Labelled images; weak ones (``full`` False) train the gate and the absent classes.
        config: Options (default :class:`GatedTrainConfig`).
        model: Another network to train the same way instead of a new ``GatedUNet``: a module
            whose ``forward_both(x)`` maps the (N, 3, H, W) input to segmentation logits
            (N, C, H, W) and gate logits (N, C), such as the seed's baseline U-Net with a gate head
            in ``bench/real_cv.py --arch unet``. The config's ``pretrained``, ``scale`` and
            ``frozen_blocks`` concern a new ``GatedUNet`` (``frozen_blocks`` and
            ``encoder_lr_scale`` also a given one); any other ``model`` trains whole at ``lr``.
        progress: Called with one line per epoch (loss, seconds, images/s).

    Returns:
        The trained model in eval mode, on the CPU (a new ``GatedUNet``'s gate thresholds are all 0,
        open, until tuned).

    Raises:
        ValueError: An invalid config, or no fully labelled image in ``data``.
        TypeError: ``model`` has no ``forward_both``.
    """
    cfg = config or GatedTrainConfig()
    cfg.validate()
    device = resolve_device(cfg.device)
    dtype = autocast_dtype(cfg.amp, device)  # None: float32
    if not data.full.any():
        raise ValueError("training needs at least one fully labelled image (masks known)")
    if cfg.area_weight > 0 and not np.isfinite(data.areas[~data.full]).any():
        raise ValueError(f"area_weight={cfg.area_weight} needs weak images with known pixel areas "
                         "(LabelledSet.areas, from a presence table's area_class_* columns); none has one")
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if model is not None and not callable(getattr(model, "forward_both", None)):
        raise TypeError(f"model must have a forward_both method (see GatedUNet), got {type(model).__name__}")
    gated = model is None or isinstance(model, GatedUNet)  # frozen blocks and encoder lr apply to it
    if model is None:
        model = GatedUNet(scale=cfg.scale)
        if cfg.pretrained:
            load_imagenet_lite0(model)
    model = model.to(device=device, memory_format=torch.channels_last)
    enc: list[torch.nn.Parameter] = []
    if gated:
        for module in [model.encoder.stem, *model.encoder.blocks[: cfg.frozen_blocks]]:
            module.requires_grad_(False)
        enc = [p for p in model.encoder.parameters() if p.requires_grad]
    enc_ids = {id(p) for p in enc}
    rest = [p for p in model.parameters() if id(p) not in enc_ids and p.requires_grad]
    groups = [{"params": enc, "lr": cfg.lr * cfg.encoder_lr_scale}] if enc else []
    opt = torch.optim.AdamW(groups + [{"params": rest, "lr": cfg.lr}], weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and dtype == torch.float16)
    base_lrs = [g["lr"] for g in opt.param_groups]
    order_base = np.concatenate([np.arange(len(data))] + [np.flatnonzero(data.full)] * (cfg.full_repeat - 1))
    steps_per_epoch = math.ceil(len(order_base) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, steps_per_epoch // 2)
    augment = SteelAugment()
    zeros = np.zeros((data.presence.shape[1], *data.images.shape[1:]), np.uint8)  # target of weak images
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        for module in model.encoder.modules() if gated else ():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        order = rng.permutation(order_base)
        t0, seen, running = time.perf_counter(), 0, 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            grays, masks = [], []
            for i in idx:
                g, m = augment(data.images[i], data.masks[i] if data.full[i] else zeros, rng)
                grays.append(g)
                masks.append(np.ascontiguousarray(m))
            x = _batch_input(grays).to(device=device, memory_format=torch.channels_last)
            full = torch.from_numpy(data.full[idx]).to(device)
            gated_rows = torch.from_numpy(data.gate[idx]).to(device)
            presence = torch.from_numpy(data.presence[idx].astype(np.float32)).to(device)
            pixel_weight = torch.where(full[:, None], torch.ones_like(presence), 1.0 - presence)
            target = torch.from_numpy(np.stack(masks)).to(device).float()
            areas = torch.from_numpy(data.areas[idx]).to(device) if cfg.area_weight > 0 else None
            frac = step / total
            lr_factor = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * frac))
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * lr_factor
            with autocast(device, dtype):
                seg, gate = model.forward_both(x)
            loss = _loss(seg.float(), gate.float(), target, pixel_weight, presence, full, cfg.gate_weight,
                         gated_rows, areas, cfg.area_weight)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            step += 1
            seen += len(idx)
            running += float(loss.detach()) * len(idx)
        secs = time.perf_counter() - t0
        line = (f"epoch {epoch + 1}/{cfg.epochs}: loss {running / max(seen, 1):.4f}, "
                f"{secs:.0f} s, {seen / secs:.1f} images/s")
        log.info(line)
        if progress is not None:
            progress(line)
    return model.cpu().eval()


@torch.inference_mode()
def predict_set(model: GatedUNet, images: np.ndarray, batch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Raw probabilities of ``model`` on grey images, without the gate applied.

    Args:
        model: A :class:`~steelfast.efficientnet.GatedUNet`.
        images: uint8 (N, H, W).
        batch_size: Images per forward pass.

    Returns:
        ``(seg, gate)``: uint8 (N, C, H, W) segmentation probabilities × 255 (rounded), and
        float32 (N, C) gate probabilities.
    """
    model.eval()
    device = next(model.parameters()).device
    segs, gates = [], []
    for start in range(0, len(images), batch_size):
        x = _batch_input(list(images[start : start + batch_size]))
        seg, gate = model.forward_both(x.to(device=device, memory_format=torch.channels_last))
        segs.append((torch.sigmoid(seg) * 255).round().to(torch.uint8).contiguous().cpu().numpy())
        gates.append(torch.sigmoid(gate).float().cpu().numpy())
    return np.concatenate(segs), np.concatenate(gates)
