"""Synthetic steel, drawn: the defect-free plate texture and each defect class's look.

In: a random generator (and, for a defect, its polygons, class and plate segment). Out: a float32
(256, 1600) image of grey levels, with the defect drawn in through the same mask it is rasterised
into. :mod:`steelfast.data.synth` composes these into whole images.
"""

from __future__ import annotations

import cv2
import numpy as np

from steelfast.severstal import SHAPE

__all__ = ["render_defect", "steel_texture"]

_HEIGHT, _WIDTH = SHAPE


# ---------------------------------------------------------------------------------------------
# steel texture


def _smooth_noise(
    rng: np.random.Generator, grid: tuple[int, int], size: tuple[int, int]
) -> np.ndarray:
    """Unit-variance-ish noise on a coarse ``grid`` (rows, cols), resized to ``size`` (h, w): float32."""
    g = rng.standard_normal(grid).astype(np.float32)
    return cv2.resize(g, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


def _uniform_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Zero-mean noise with std ~1 from random bytes (far faster than float normals): float32."""
    n = shape[0] * shape[1]
    u = np.frombuffer(rng.bytes(n), dtype=np.uint8).reshape(shape).astype(np.float32)
    return (u - 127.5) * np.float32(1.0 / 73.9)


def steel_texture(rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """Defect-free rolled steel.

    Returns:
        (img float32 (H, W) in grey levels, (x_lo, x_hi) the columns that show plate, not black).
    """
    h, w = _HEIGHT, _WIDTH
    base = rng.uniform(65.0, 125.0)
    img = _smooth_noise(rng, (3, 8), (h, w)) * np.float32(rng.uniform(4.0, 11.0))
    img += np.float32(base)
    # Vertical gradient: the top rows are often darker in the real images.
    img += np.linspace(-rng.uniform(0, 14), rng.uniform(0, 6), h, dtype=np.float32)[:, None]
    # Mottling stretched along the rolling direction (cells ~20 px tall, ~5 px wide).
    img += _smooth_noise(rng, (12, 320), (h, w)) * np.float32(rng.uniform(2.5, 6.0))
    # Column streaks: a 1-D profile along x, faded in and out along y.
    col = rng.standard_normal(w).astype(np.float32)
    col = np.convolve(col, np.array([0.25, 0.5, 0.25], np.float32), mode="same")
    n_strong = rng.integers(2, 12)
    col[rng.integers(0, w, n_strong)] += rng.normal(0, 3.0, n_strong).astype(np.float32)
    fade = 0.4 + 0.6 * _smooth_noise(rng, (4, 1), (h, 1)).clip(-1, 1) ** 2
    img += (fade * np.float32(rng.uniform(1.5, 4.0))) * col[None, :]
    # Fine grain, also elongated along y (cells ~4 x 2 px), then sensor noise per pixel.
    img += _smooth_noise(rng, (64, 800), (h, w)) * np.float32(rng.uniform(2.0, 4.5))
    img += _uniform_noise(rng, (h, w)) * np.float32(rng.uniform(3.0, 5.5))
    # A few isolated specks (dust, tiny pits), far smaller and sparser than the class-1 clusters.
    n_specks = int(rng.integers(0, 40))
    sy, sx = rng.integers(0, h, n_specks), rng.integers(0, w - 1, n_specks)
    img[sy, sx] += rng.choice(np.array([-22.0, 28.0], np.float32), n_specks)

    x_lo, x_hi = 0, w
    if rng.random() < 0.08:  # the plate ends inside the frame: black beyond its edge
        edge = int(rng.integers(250, 1350))
        dark = (_uniform_noise(rng, (h, w)) * 1.5 + np.float32(rng.uniform(3, 9))).astype(
            np.float32
        )
        if rng.random() < 0.5:  # black on the right
            img[:, edge + 4 :] = dark[:, edge + 4 :]
            img[:, edge : edge + 4] += 25.0  # the lit edge of the plate
            x_hi = edge - 8
        else:
            img[:, : edge - 4] = dark[:, : edge - 4]
            img[:, edge - 4 : edge] += 25.0
            x_lo = edge + 8
    return img, (x_lo, x_hi)


# ---------------------------------------------------------------------------------------------
# defect appearance, rendered inside the mask's bounding box


def _alpha(mask_roi: np.ndarray) -> np.ndarray:
    """Soft alpha (float32) that is 1 inside the mask and fades over ~1 px at its edge."""
    return cv2.GaussianBlur(mask_roi.astype(np.float32), (3, 3), 0.7)


def _look_pits(rng: np.random.Generator, roi: np.ndarray, m: np.ndarray) -> np.ndarray:
    h, w = m.shape
    coarse = (max(1, h // 2), max(1, w // 2))
    u = cv2.resize(rng.random(coarse).astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
    pits = np.where(u > 0.72, -48.0, np.where(u < 0.06, 40.0, 0.0)).astype(np.float32)
    pits = cv2.GaussianBlur(pits, (3, 3), 0.6)
    return roi - np.float32(rng.uniform(14, 24)) + pits


def _look_marks(rng: np.random.Generator, roi: np.ndarray, m: np.ndarray) -> np.ndarray:
    # Bright, smooth mark; a darker core where the mark is thickest (distance from its edge).
    dist = cv2.distanceTransform(m, cv2.DIST_L2, 3)
    core = np.clip(dist / max(float(dist.max()), 1.0), 0, 1) ** 2
    return roi + np.float32(rng.uniform(45, 65)) - np.float32(rng.uniform(45, 60)) * core


def _look_scratches(
    rng: np.random.Generator, roi: np.ndarray, m: np.ndarray, slope: float
) -> np.ndarray:
    # Stripes that follow the scratch direction: a 1-D profile indexed by x - slope * y.
    h, w = m.shape
    n = w + int(abs(slope) * h) + 8
    prof = rng.standard_normal(n).astype(np.float32)
    prof = np.convolve(prof, np.array([0.3, 0.4, 0.3], np.float32), mode="same") * np.float32(
        rng.uniform(22, 32)
    )
    xx = (
        np.arange(w, dtype=np.float32)[None, :]
        - np.float32(slope) * np.arange(h, dtype=np.float32)[:, None]
    )
    idx = (xx - xx.min()).astype(np.int32)
    along = 1.0 + 0.35 * _smooth_noise(rng, (max(2, h // 48), 2), (h, w))
    return roi - np.float32(rng.uniform(18, 28)) + prof[idx] * along


def _look_blobs(rng: np.random.Generator, roi: np.ndarray, m: np.ndarray) -> np.ndarray:
    h, w = m.shape
    rough = _smooth_noise(rng, (max(2, h // 10), max(2, w // 10)), (h, w)) * np.float32(12.0)
    rough += _uniform_noise(rng, (h, w)) * np.float32(6.0)
    inner = cv2.erode(m, np.ones((5, 5), np.uint8))
    rim = (m - inner).astype(np.float32)
    return roi - np.float32(rng.uniform(40, 55)) + rough + rim * np.float32(rng.uniform(55, 80))


def _slope_of(poly: np.ndarray) -> float:
    """dx/dy of a polygon's long axis (its principal direction)."""
    c = poly - poly.mean(axis=0)
    cov = c.T @ c
    _, evecs = np.linalg.eigh(cov)
    vx, vy = evecs[:, 1]
    return 0.0 if abs(vy) < 1e-6 else float(np.clip(vx / vy, -3, 3))


def render_defect(
    rng: np.random.Generator,
    img: np.ndarray,
    mask: np.ndarray,
    polys: list[np.ndarray],
    cls: int,
    xs: int,
    xe: int,
) -> None:
    """Rasterise ``polys`` into ``mask`` (only inside columns [xs, xe)) and draw them into ``img``."""
    seg = mask[:, xs:xe]
    pts = [np.round(p).astype(np.int32).reshape(-1, 1, 2) for p in polys]
    cv2.fillPoly(seg, pts, 1, lineType=cv2.LINE_8, offset=(-xs, 0))
    cols = np.flatnonzero(seg.any(axis=0))
    rows = np.flatnonzero(seg.any(axis=1))
    if cols.size == 0:
        return
    # Bounding box with a 2 px margin so the soft edge has room.
    y0, y1 = max(0, rows[0] - 2), min(_HEIGHT, rows[-1] + 3)
    x0, x1 = max(0, xs + cols[0] - 2), min(_WIDTH, xs + cols[-1] + 3)
    m = mask[y0:y1, x0:x1]
    roi = img[y0:y1, x0:x1]
    if cls == 1:
        look = _look_pits(rng, roi, m)
    elif cls == 2:
        look = _look_marks(rng, roi, np.ascontiguousarray(m))
    elif cls == 3:
        look = _look_scratches(rng, roi, m, _slope_of(polys[0]))
    else:
        look = _look_blobs(rng, roi, np.ascontiguousarray(m))
    a = _alpha(m)
    roi += a * (look - roi)
