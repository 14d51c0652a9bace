"""The backend interface: a normalized float32 batch in, per-class probabilities out.

Every backend maps a normalized batch ``x`` float32 (N, C, H, W) (H, W multiples of
:data:`~steelfast.inference.onnx_file.INPUT_MULTIPLE`; see :func:`steelfast.images.to_model_input`)
to probabilities (N, classes, H, W) as a NumPy array of float32 or float16
(:meth:`Backend.predict_proba`). :class:`Backend` checks the batch and answers an empty one; a
subclass runs the model (:mod:`.torch_backend`, :mod:`.onnxruntime_backend`,
:mod:`.tensorrt_backend`).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from steelfast.inference.onnx_file import INPUT_MULTIPLE
from steelfast.severstal import CLASSES

__all__ = ["Backend", "check_batch"]


def check_batch(x: Any, channels: int | None) -> np.ndarray:
    """``x`` as a float32 (N, C, H, W) NumPy array, H and W multiples of :data:`INPUT_MULTIPLE`.

    Args:
        x: The batch (a NumPy array, or a torch tensor, which is copied to the host).
        channels: The channels the model takes, or None for any.

    Raises:
        TypeError: ``x`` is not a float32 array.
        ValueError: ``x`` has the wrong rank, channel count or size.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"predict_proba expects a float32 numpy array (N, C, H, W), got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"predict_proba expects float32 input, got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"predict_proba expects shape (N, C, H, W), got {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"the model takes {channels} input channels, got shape {x.shape}")
    if x.shape[2] % INPUT_MULTIPLE or x.shape[3] % INPUT_MULTIPLE:
        raise ValueError(
            f"height and width must be multiples of {INPUT_MULTIPLE} (pad the images), got shape {x.shape}"
        )
    return x


class Backend(abc.ABC):
    """A model ready to run: ``predict_proba`` maps a normalized batch to probabilities.

    Attributes:
        name: ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``.
        device: ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``: the dtype the model computes in.
        metadata: The checkpoint metadata (normalization, post-processing, input size, ...).
        preferred_batch_size: The batch size this backend runs best at (used when the caller
            gives none).
    """

    name: str = ""
    device: str = "cpu"
    precision: str = "fp32"
    preferred_batch_size: int = 1

    def __init__(self, metadata: Mapping[str, Any]) -> None:
        self.metadata = dict(metadata)
        self.channels = int(self.metadata.get("input", {}).get("channels", 3))

    def predict_proba(self, x: Any) -> np.ndarray:
        """Probabilities for a batch.

        Args:
            x: float32 (N, C, H, W), normalized, H and W multiples of 32.

        Returns:
            np.ndarray: float32 or float16 (N, classes, H, W), values in [0, 1].

        Raises:
            TypeError: ``x`` is not a float32 array.
            ValueError: ``x`` has the wrong rank, channel count or size.
        """
        batch = check_batch(x, self.channels)
        if batch.shape[0] == 0:
            classes = len(self.metadata.get("classes", CLASSES))
            return np.zeros((0, classes, *batch.shape[2:]), np.float32)
        return self._run(batch)

    @abc.abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray:
        """Backend-specific forward pass of a validated, non-empty batch."""

    def weights_sha256(self) -> str | None:
        """Hex SHA-256 that identifies the weights: the checkpoint's ``weights_sha256`` from the
        metadata, or None when unknown (subclasses know more)."""
        value = self.metadata.get("weights_sha256")
        return str(value) if value else None

    def close(self) -> None:
        """Release resources (sessions, GPU memory). The backend is unusable afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"

