"""The PyTorch backend: a steelfast ``UNet`` in, probabilities from eager or compiled torch out.

On the CPU: weights and activations in bfloat16 (when the CPU has native bfloat16, else float32),
channels-last memory format, ``torch.inference_mode``, and ``torch.compile`` (inductor) when a C++
compiler is found; compiled on the CPU, the model first goes through
:func:`steelfast.models.inference_graph`. On CUDA: float16 and channels-last.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import shutil
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from steelfast._device import cpu_has_native_bf16
from steelfast.inference.backends.base import Backend
from steelfast.inference.errors import BackendUnavailableError
from steelfast.inference.export import ProbabilityModel
from steelfast.models import UNet, inference_graph

__all__ = ["TorchBackend"]

log = logging.getLogger(__name__)


class TorchBackend(Backend):
    """PyTorch eager or compiled inference.

    Args:
        model: A steelfast ``UNet`` (logits model) in eval mode.
        metadata: Its checkpoint metadata.
        device: ``"cpu"`` or ``"cuda"`` (default: CUDA when available).
        precision: ``"bf16"``, ``"fp16"`` or ``"fp32"`` (default: ``"bf16"`` on a CPU with native
            bfloat16, ``"fp16"`` on CUDA, else ``"fp32"``).
        channels_last: Use the channels-last memory format (faster convolutions on CPU and GPU).
        compile: ``True``, ``False`` or ``"auto"`` (compile on the CPU when a C++ compiler is on
            the PATH). Compilation happens on the first batch of each new shape (seconds); if it
            fails, a warning is logged and the backend runs eagerly.
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        metadata: Mapping[str, Any],
        *,
        device: str | None = None,
        precision: str | None = None,
        channels_last: bool = True,
        compile: bool | str = "auto",
    ) -> None:
        super().__init__(metadata)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("device='cuda' was asked for but CUDA is not available")
        if precision is None:
            precision = "fp16" if device == "cuda" else ("bf16" if cpu_has_native_bf16() else "fp32")
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        if precision not in dtypes:
            raise ValueError(f"precision must be one of {sorted(dtypes)}, got {precision!r}")
        if compile not in (True, False, "auto"):
            raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
        self.device = device
        self.precision = precision
        self.dtype = dtypes[precision]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.preferred_batch_size = 8 if device == "cuda" else 1
        if compile == "auto":
            compile = device == "cpu" and any(shutil.which(c) for c in ("c++", "g++", "clang++"))
        self.compiled = bool(compile)
        # A copy: converting dtype and memory format in place would change the caller's model.
        # Compiled on the CPU, the rewritten graph (split skip concatenations, exp-based ELU)
        # runs about 10 % faster (bench/bench_inference.py); eagerly it would only add kernels.
        fast = self.compiled and device == "cpu" and isinstance(model, UNet)
        if hasattr(model, "fused_for_inference"):
            net = model.fused_for_inference()  # batch norms folded into the convolutions
        else:
            net = inference_graph(model) if fast else copy.deepcopy(model)
        net = ProbabilityModel(net).eval().to(device=device, dtype=self.dtype, memory_format=self.memory_format)
        for p in net.parameters():
            p.requires_grad_(False)
        # float16 output only where the model computes in float16: inductor refuses to mix
        # bfloat16 and float16 in one kernel, and NumPy has no bfloat16.
        self._eager = _OutputModel(
            net, self.dtype, self.memory_format, torch.float16 if self.dtype == torch.float16 else torch.float32
        )
        self._forward: Any = self._eager
        if self.compiled:
            with _quiet_torch():
                self._forward = torch.compile(self._eager, dynamic=False)
        self._shapes: set[tuple[int, ...]] = set()

    def _pad_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Pad a short batch to an already compiled batch size instead of compiling again."""
        n, rest = x.shape[0], tuple(x.shape[1:])
        bigger = sorted(s[0] for s in self._shapes if s[1:] == rest and s[0] > n)
        if (n, *rest) in self._shapes or not bigger:
            self._shapes.add((n, *rest))
            return x
        pad = x.new_zeros((bigger[0] - n, *rest))
        return torch.cat([x, pad])

    def _run(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        with torch.inference_mode():
            t = torch.from_numpy(x).to(self.device, non_blocking=True)
            if self.compiled:
                t = self._pad_batch(t)
                try:
                    with _quiet_torch():
                        out = self._forward(t)
                except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back, loudly
                    log.warning(
                        "torch.compile failed (%s: %s); running the model eagerly (slower)",
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "",
                    )
                    self.compiled = False
                    self._forward = self._eager
                    out = self._forward(t)
            else:
                out = self._forward(t)
            return out[:n].cpu().numpy()

    def weights_sha256(self) -> str:
        """The checkpoint's hash from the metadata, else a hash of the parameters as run."""
        known = super().weights_sha256()
        if known is not None:
            return known
        digest = hashlib.sha256()
        for key, value in self._eager.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().cpu().float().contiguous().numpy().tobytes())
        return digest.hexdigest()


@contextlib.contextmanager
def _quiet_torch() -> Any:
    """Silence deprecation warnings that torch's compiler raises from its own internals."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


class _OutputModel(nn.Module):
    """Float32 NCHW input in, probabilities out as a contiguous (N, classes, H, W) ``out_dtype`` tensor.

    The input conversion is part of the module so that a compiled graph fuses it into one kernel.
    """

    def __init__(self, net: nn.Module, dtype: torch.dtype, memory_format: torch.memory_format,
                 out_dtype: torch.dtype) -> None:
        super().__init__()
        self.net = net
        self.dtype = dtype
        self.memory_format = memory_format
        self.out_dtype = out_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype=self.dtype, memory_format=self.memory_format)
        return self.net(x).to(self.out_dtype).contiguous()
