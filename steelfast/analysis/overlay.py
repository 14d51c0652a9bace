"""Overlays: a steel image with its defect masks drawn in the colours of the capstone analysis.

In: a uint8 (H, W) grey image and (4, H, W) truth and/or predicted masks (or an image file and label
tables). Out: a uint8 RGB array, or a PNG file.

The colours are points of matplotlib's viridis colormap (see :data:`CLASS_COLORS`): class 1 green,
2 light blue, 3 dark blue, 4 yellow. Each mask is shaded (alpha blend) and outlined. With both a truth
and a prediction, the two panels are stacked (truth first) with a caption on each. The saved
overlays (:func:`overlay_pair` and the functions built on it) end with a legend strip,
:data:`LEGEND_HEIGHT` rows that give each class's number and name in its colour.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from steelfast._io import PathLike, atomic_write_bytes
from steelfast.images import read_gray
from steelfast.labels import build_masks, read_labels
from steelfast.severstal import CLASS_NAMES

__all__ = [
    "CLASS_COLORS",
    "LEGEND_HEIGHT",
    "VIRIDIS_POSITIONS",
    "draw_legend",
    "draw_overlay",
    "overlay_file",
    "overlay_pair",
    "save_overlay",
    "save_png",
]

#: Position of each class on the viridis colormap (0..1).
VIRIDIS_POSITIONS = {1: 0.7, 2: 0.4, 3: 0.15, 4: 1.0}

#: RGB colour of each class: ``matplotlib.colormaps["viridis"](VIRIDIS_POSITIONS[c])`` in 0..255
#: (kept as constants so drawing does not import matplotlib; a test checks them).
CLASS_COLORS: dict[int, tuple[int, int, int]] = {
    1: (68, 191, 112),  # green
    2: (42, 120, 142),  # light blue
    3: (70, 52, 128),  # dark blue
    4: (253, 231, 37),  # yellow
}


#: Rows of the legend strip under an overlay (see :func:`draw_legend`).
LEGEND_HEIGHT = 24


def draw_legend(width: int) -> np.ndarray:
    """A white strip naming the classes: per class a swatch and ``"<id> <name>"`` in its colour.

    The classes share the width equally; where a cell is too narrow for the name, only the
    number is written (and only the swatch where even that does not fit).

    Args:
        width: Width in pixels (that of the overlay it goes under), >= 1.

    Returns:
        np.ndarray: uint8 (:data:`LEGEND_HEIGHT`, width, 3) RGB.
    """
    if int(width) < 1:
        raise ValueError(f"legend width must be >= 1, got {width!r}")
    strip = np.full((LEGEND_HEIGHT, int(width), 3), 255, dtype=np.uint8)
    cell = int(width) // len(CLASS_COLORS)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    for i, (cls, color) in enumerate(CLASS_COLORS.items()):
        x0 = i * cell
        side = max(1, min(12, cell - 2))
        top = (LEGEND_HEIGHT - side) // 2
        strip[top : top + side, x0 + 1 : x0 + 1 + side] = color
        room = cell - side - 6
        for text in (f"{cls} {CLASS_NAMES[cls]}", str(cls)):
            (tw, th), _ = cv2.getTextSize(text, font, scale, 3)
            if tw <= room:
                org = (x0 + side + 4, (LEGEND_HEIGHT + th) // 2)
                # A dark edge keeps the light colours (yellow) readable on white.
                cv2.putText(strip, text, org, font, scale, (0, 0, 0), 3, cv2.LINE_AA)
                cv2.putText(strip, text, org, font, scale, color, 1, cv2.LINE_AA)
                break
    return strip


def _check_gray(gray: np.ndarray) -> np.ndarray:
    arr = np.asarray(gray)
    if arr.dtype != np.uint8 or arr.ndim != 2:
        raise ValueError(f"image must be uint8 (H, W), got {arr.dtype} {arr.shape}")
    return arr


def _check_masks(masks: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    m = np.asarray(masks)
    if m.ndim != 3 or m.shape[0] != 4 or m.shape[1:] != shape:
        raise ValueError(f"{name} masks must be (4, {shape[0]}, {shape[1]}), got {m.shape}")
    return m.astype(bool, copy=False) if m.dtype != bool else m


def draw_overlay(
    gray: np.ndarray,
    masks: np.ndarray,
    *,
    alpha: float = 0.35,
    outline: int = 2,
    caption: str | None = None,
) -> np.ndarray:
    """Draw the masks of one image over it.

    Args:
        gray: uint8 (H, W) image.
        masks: (4, H, W) masks, any dtype, non-zero = defect; channel c is ClassId c+1.
        alpha: Opacity of the shading inside each mask (0 = outline only).
        outline: Outline thickness in pixels (0 = none).
        caption: Text written in the top-left corner.

    Returns:
        np.ndarray: uint8 (H, W, 3) RGB.

    Raises:
        ValueError: wrong shapes or dtypes, ``alpha`` outside [0, 1].
    """
    g = _check_gray(gray)
    m = _check_masks(masks, g.shape, "the")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    rgb = cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)
    out = rgb.astype(np.float32)
    for c in range(4):
        if not m[c].any():
            continue
        color = np.array(CLASS_COLORS[c + 1], dtype=np.float32)
        out[m[c]] = (1.0 - alpha) * out[m[c]] + alpha * color
    out8 = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if outline > 0:
        for c in range(4):
            if m[c].any():
                contours, _ = cv2.findContours(
                    m[c].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
                )
                cv2.drawContours(out8, contours, -1, CLASS_COLORS[c + 1], int(outline))
    if caption:
        cv2.putText(
            out8, caption, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA
        )
        cv2.putText(
            out8, caption, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA
        )
    return out8


def overlay_pair(
    gray: np.ndarray,
    truth: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    *,
    alpha: float = 0.35,
    gap: int = 6,
    legend: bool = True,
) -> np.ndarray:
    """Truth and prediction overlays of one image, stacked, truth first, then the legend.

    Args:
        gray: uint8 (H, W) image.
        truth: (4, H, W) true masks or None.
        pred: (4, H, W) predicted masks or None.
        alpha: Shading opacity (see :func:`draw_overlay`).
        gap: White rows between the panels.
        legend: Append the :func:`draw_legend` strip (L = :data:`LEGEND_HEIGHT` rows).

    Returns:
        np.ndarray: uint8 RGB, (H + L, W, 3) with one of truth/pred (or neither: the bare
        image), (2H + gap + L, W, 3) with both; L = 0 with ``legend=False``.
    """
    g = _check_gray(gray)
    if truth is None and pred is None:
        panels = [draw_overlay(g, np.zeros((4, *g.shape), dtype=bool))]
    elif pred is None or truth is None:
        only = truth if pred is None else pred
        panels = [draw_overlay(g, only, alpha=alpha)]  # type: ignore[arg-type]
    else:
        top = draw_overlay(g, truth, alpha=alpha, caption="truth")
        bottom = draw_overlay(g, pred, alpha=alpha, caption="prediction")
        sep = np.full((int(gap), g.shape[1], 3), 255, dtype=np.uint8)
        panels = [top, sep, bottom]
    if legend:
        panels.append(draw_legend(g.shape[1]))
    return panels[0] if len(panels) == 1 else np.concatenate(panels, axis=0)


def save_png(path: PathLike, rgb: np.ndarray) -> Path:
    """Write an RGB image as PNG, atomically (temporary file + rename).

    Args:
        path: Output file; its folder is created.
        rgb: uint8 (H, W, 3) RGB or (H, W) grey.

    Returns:
        Path: ``path``.
    """
    p = Path(path)
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) image, got {arr.dtype} {arr.shape}")
    bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:  # pragma: no cover - only on allocation failure
        raise RuntimeError(f"PNG encoding failed for {p}")
    return atomic_write_bytes(p, buf.tobytes())


def save_overlay(
    path: PathLike,
    gray: np.ndarray,
    truth: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    *,
    alpha: float = 0.35,
) -> Path:
    """Draw :func:`overlay_pair` (with its legend) and save it as a PNG.

    Args:
        path: Output ``.png`` file.
        gray: uint8 (H, W) image.
        truth: (4, H, W) true masks or None.
        pred: (4, H, W) predicted masks or None.
        alpha: Shading opacity.

    Returns:
        Path: ``path``.

    Raises:
        ValueError: ``path`` does not end in .png, or bad shapes.
    """
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise ValueError(f"overlay output must be a .png file, got {p}")
    return save_png(p, overlay_pair(gray, truth, pred, alpha=alpha))


def overlay_file(
    image: PathLike,
    out: PathLike,
    *,
    labels: pd.DataFrame | PathLike | None = None,
    pred: pd.DataFrame | PathLike | None = None,
    alpha: float = 0.35,
) -> Path:
    """Read an image, look up its masks by file name in label/prediction tables, save the overlay.

    Args:
        image: Image file; its name (e.g. ``0002cc93b.jpg``) is the ImageId looked up.
        out: Output ``.png`` file.
        labels: Truth: a labels frame or a CSV/XLSX/Parquet file (any format
            :func:`steelfast.labels.read_labels` reads), or None.
        pred: Prediction: a submission frame or file in the same formats, or None.
        alpha: Shading opacity.

    Returns:
        Path: ``out``.

    Raises:
        FileNotFoundError: ``image`` or a table is missing.
        ImageReadError: ``image`` cannot be decoded.
    """
    gray = read_gray(image)
    iid = Path(image).name
    masks = []
    for table in (labels, pred):
        if table is None:
            masks.append(None)
            continue
        frame = table if isinstance(table, pd.DataFrame) else read_labels(table)
        masks.append(build_masks(frame, iid, gray.shape))
    return save_overlay(out, gray, masks[0], masks[1], alpha=alpha)
