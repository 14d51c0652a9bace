"""Augmentations that fit steel-sheet images.

Flow: one uint8 grey image (H, W) and its masks (C, H, W) or None → the same, augmented.

What real sheets vary in, and what this imitates:

* direction of travel and camera side: horizontal and vertical flips (masks flip with the image);
* lighting: brightness, contrast and gamma;
* focus: a mild Gaussian blur;
* compression: re-encoding as JPEG at quality 40-95;
* sheet edges: a dark band of random width on the left or right, where the camera sees past
  the edge of the sheet (masks are kept: a defect under a dark band is still a defect).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from steelfast._validate import check_fraction

__all__ = ["SteelAugment"]


@dataclass(frozen=True)
class SteelAugment:
    """Random steel augmentations; each probability is per image.

    Attributes:
        flip: Probability of a horizontal flip, and separately of a vertical flip.
        photometric: Probability of a brightness/contrast/gamma change.
        blur: Probability of a Gaussian blur (sigma 0.5-1.5).
        jpeg: Probability of re-encoding as JPEG (quality 40-95).
        edge_band: Probability of a dark band at the left or right edge.
    """

    flip: float = 0.5
    photometric: float = 0.8
    blur: float = 0.2
    jpeg: float = 0.3
    edge_band: float = 0.2

    def __post_init__(self) -> None:
        for name in ("flip", "photometric", "blur", "jpeg", "edge_band"):
            check_fraction(name, getattr(self, name))

    def __call__(
        self, gray: np.ndarray, masks: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Augment one image and its masks (None for an image without masks).

        Args:
            gray: uint8 (H, W).
            masks: uint8 (C, H, W) or None.
            rng: Random generator (the only source of randomness).

        Returns:
            The augmented (H, W) image (a new array) and masks (views or new arrays).
        """
        img = gray
        if rng.random() < self.flip:
            img, masks = img[:, ::-1], None if masks is None else masks[:, :, ::-1]
        if rng.random() < self.flip:
            img, masks = img[::-1], None if masks is None else masks[:, ::-1]
        img = np.ascontiguousarray(img)
        if rng.random() < self.photometric:
            gain, bias = rng.uniform(0.75, 1.3), rng.uniform(-25, 25)
            gamma = float(np.exp(rng.uniform(-0.25, 0.25)))
            lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma * gain + bias, 0, 255)
            img = cv2.LUT(img, lut.astype(np.uint8))
        if rng.random() < self.blur:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=float(rng.uniform(0.5, 1.5)))
        if rng.random() < self.edge_band:
            img = _edge_band(img, rng)
        if rng.random() < self.jpeg:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 96))])
            if ok:
                img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        return img, masks


def _edge_band(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darken a band of 40-400 columns at one side, with a soft 8-32 px transition."""
    h, w = img.shape
    width = int(rng.integers(40, min(400, w // 2)))
    ramp = int(rng.integers(8, 33))
    level = rng.uniform(0.05, 0.35)
    x = np.arange(w, dtype=np.float32)
    factor = np.clip((x - width) / ramp, 0.0, 1.0) * (1 - level) + level
    if rng.random() < 0.5:
        factor = factor[::-1]
    noise = rng.normal(0, 3, size=(h, w)).astype(np.float32)
    out = img.astype(np.float32) * factor[None, :] + noise * (1 - factor[None, :])
    return np.clip(out, 0, 255).astype(np.uint8)
