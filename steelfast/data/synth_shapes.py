"""Synthetic defect geometry: where each class goes on the plate, how large it is, its polygons.

In: a random generator, the classes of an image and the plate's columns. Out: per class a total
area (drawn from a log-normal fitted to the real areas, :data:`steelfast.severstal.REAL_STATS`),
a column segment of its own (so masks never overlap) and polygons, (K, 2) float64 (x, y).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from steelfast.severstal import SHAPE

__all__ = ["class_segments", "defect_polygons", "lognormal_area"]

_HEIGHT = SHAPE[0]

# Per-class total area (pixels) where present: log-normal (median, sigma) matching the real median
# and mean (mean/median = exp(sigma^2 / 2)), clipped to the real range. The medians are scaled a
# little above the real ones because clipping at the image border and rasterising polygons lose
# area; the generator's EDA report checks the result against REAL_STATS.
_AREA = {
    1: (3950.0, 0.76, 200.0, 30000.0),
    2: (3000.0, 0.52, 320.0, 14000.0),
    3: (12500.0, 1.25, 150.0, 280000.0),
    4: (30000.0, 0.78, 500.0, 180000.0),
}


# ---------------------------------------------------------------------------------------------
# defect geometry: polygons (K, 2) int32 of (x, y), drawn inside a segment [xs, xe)


def lognormal_area(rng: np.random.Generator, cls: int) -> float:
    """Total defect area (pixels) of class ``cls`` in one image: a clipped log-normal draw."""
    med, sigma, lo, hi = _AREA[cls]
    return float(np.clip(med * np.exp(sigma * rng.standard_normal()), lo, hi))


def _pick(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Uniform in [lo, hi], or the midpoint when the range is empty (a tight segment)."""
    return float(rng.uniform(lo, hi)) if hi > lo else 0.5 * (lo + hi)


def _quad(
    rng: np.random.Generator, cx: float, cy: float, w: float, h: float, angle: float
) -> np.ndarray:
    """A jittered, rotated rectangle: (4, 2) float64 vertices."""
    pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]], dtype=np.float64) * 0.5
    pts *= rng.uniform(0.8, 1.2, size=(4, 2))
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]]) + (cx, cy)


def _geom_pits(rng: np.random.Generator, area: float, xs: int, xe: int) -> list[np.ndarray]:
    n = int(np.clip(round(area / rng.uniform(350, 900)), 1, 14))
    seg = xe - xs
    cx0 = _pick(rng, xs + 0.2 * seg, xe - 0.2 * seg)
    cy0 = rng.uniform(50, _HEIGHT - 50)
    spread_x = min(seg / 3, 30 + 14 * n)
    polys = []
    for _ in range(n):
        a = area / n * rng.uniform(0.6, 1.4)
        asp = rng.uniform(1.0, 2.4)  # taller than wide, like the real pits
        pw = np.sqrt(a / asp)
        cx = cx0 + rng.normal(0, spread_x)
        cy = np.clip(cy0 + rng.normal(0, 55), pw * asp / 2, _HEIGHT - pw * asp / 2)
        polys.append(_quad(rng, cx, cy, pw, pw * asp, rng.normal(0, 0.2)))
    return polys


def _strip(
    rng: np.random.Generator,
    x0: float,
    y0: float,
    length: float,
    width: float,
    angle: float,
    wiggle: float,
) -> np.ndarray:
    """A band along a line from (x0, y0) going down at ``angle`` from vertical: (2K, 2) float64."""
    k = max(3, int(length // 24) + 1)
    t = np.linspace(0.0, length, k)
    dx, dy = np.sin(angle), np.cos(angle)
    cx = x0 + t * dx + np.cumsum(rng.normal(0, wiggle, k))
    cy = y0 + t * dy
    # Narrow strips vary in width along their length; wide bands keep straighter edges.
    jitter = 0.25 if width < 40 else 0.08
    half = 0.5 * width * rng.uniform(1 - jitter, 1 + jitter, size=k)
    half[0] *= 0.5  # tapered ends, like the annotated scratches
    half[-1] *= 0.5
    left = np.stack([cx - half * dy, cy + half * dx], axis=1)
    right = np.stack([cx + half * dy, cy - half * dx], axis=1)
    return np.concatenate([left, right[::-1]])


def _geom_marks(rng: np.random.Generator, area: float, xs: int, xe: int) -> list[np.ndarray]:
    n = 1 if rng.random() < 0.8 else 2
    polys = []
    for _ in range(n):
        a = area / n
        width = rng.uniform(9, 18)
        length = a / width
        if length > 220:
            length, width = 220.0, a / 220.0
        length = max(length, 14.0)
        x0 = _pick(rng, xs + width, xe - width)
        y0 = _pick(rng, 0, _HEIGHT - length)
        polys.append(_strip(rng, x0, y0, length, width, rng.normal(0, 0.12), 1.0))
    return polys


def _geom_scratches(
    rng: np.random.Generator, area: float, xs: int, xe: int, alone: bool
) -> list[np.ndarray]:
    seg = xe - xs
    if area < 14000 * rng.uniform(0.7, 1.3):  # one to three long, thin scratches
        n = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
        polys = []
        for _ in range(n):
            length = rng.uniform(130, 300)
            angle = float(np.clip(rng.normal(0, 0.25), -0.6, 0.6))
            width = max(5.0, area / n / min(length, _HEIGHT / np.cos(angle)))
            y0 = _pick(rng, -40, _HEIGHT - length * np.cos(angle))
            x_end = np.sin(angle) * length
            x0 = _pick(rng, xs + width - min(0, x_end), xe - width - max(0, x_end))
            polys.append(_strip(rng, x0, y0, length, width, angle, 1.5))
        return polys
    if alone and rng.random() < 0.35:  # a long slanted band across the plate (rolled-in streak)
        band_h = rng.uniform(50, 130)
        length = min(seg * rng.uniform(0.6, 1.0), area / band_h)
        band_h = min(area / length, 200.0)
        x0 = _pick(rng, xs, xe - length)
        y0 = _pick(rng, band_h / 2, _HEIGHT - band_h / 2)
        slope = rng.normal(0, 0.06)
        k = max(3, int(length // 80) + 1)
        xsq = np.linspace(x0, x0 + length, k)
        yc = y0 + (xsq - x0) * slope + np.cumsum(rng.normal(0, 2.0, k))
        top = np.stack([xsq, yc - band_h / 2 * rng.uniform(0.85, 1.15, k)], axis=1)
        bot = np.stack([xsq, yc + band_h / 2 * rng.uniform(0.85, 1.15, k)], axis=1)
        return [np.concatenate([top, bot[::-1]])]
    # A wide band across the full height (a streaked region), slanted a little.
    width = float(np.clip(area / _HEIGHT, 30, seg - 4))
    angle = float(np.clip(rng.normal(0, 0.12), -0.3, 0.3))
    x_end = np.tan(angle) * _HEIGHT
    x0 = _pick(rng, xs + width / 2 - min(0, x_end), xe - width / 2 - max(0, x_end))
    return [_strip(rng, x0, -8, _HEIGHT / np.cos(angle) + 16, width, angle, 3.0)]


def _geom_blobs(rng: np.random.Generator, area: float, xs: int, xe: int) -> list[np.ndarray]:
    n = int(rng.choice([1, 2, 3], p=[0.65, 0.25, 0.1]))
    polys = []
    for _ in range(n):
        a = area / n * rng.uniform(0.7, 1.3)
        stretch = rng.uniform(1.0, 1.8)
        r = np.sqrt(a / (np.pi * stretch))
        if r > 118:  # keep it inside the 256 rows: grow sideways instead
            stretch *= (r / 118) ** 2
            r = 118.0
        k = 22
        theta = np.sort(rng.uniform(0, 2 * np.pi, k))
        # Smooth random radius: a few low Fourier modes.
        modes = rng.normal(0, 1, (3, 2)) * np.array([[0.16], [0.1], [0.06]])
        rad = 1.0 + sum(
            m[0] * np.cos((j + 2) * theta) + m[1] * np.sin((j + 2) * theta)
            for j, m in enumerate(modes)
        )
        rad = rad * rng.uniform(0.92, 1.08, k)
        rx, ry = r * stretch, r
        lo, hi = xs + 0.8 * rx, xe - 0.8 * rx
        cx = _pick(rng, lo, hi)
        cy = _pick(rng, 0.6 * ry, _HEIGHT - 0.6 * ry)
        polys.append(
            np.stack([cx + rx * rad * np.cos(theta), cy + ry * rad * np.sin(theta)], axis=1)
        )
    return polys


def defect_polygons(
    rng: np.random.Generator, cls: int, area: float, xs: int, xe: int, *, alone: bool
) -> list[np.ndarray]:
    """The polygons of one class's defects, of total ``area`` pixels, inside columns [xs, xe).

    ``alone``: the class is the image's only one (class 3 may then draw a long band across the plate).
    """
    if cls == 1:
        return _geom_pits(rng, area, xs, xe)
    if cls == 2:
        return _geom_marks(rng, area, xs, xe)
    if cls == 3:
        return _geom_scratches(rng, area, xs, xe, alone=alone)
    return _geom_blobs(rng, area, xs, xe)


def class_segments(
    rng: np.random.Generator, classes: Sequence[int], areas: dict[int, float], lo: int, hi: int
) -> dict[int, tuple[int, int]]:
    """Split the plate columns [lo, hi) into one segment per class, sized by what each needs."""
    need = {1: 260.0, 2: 80.0}
    for c in classes:
        if c == 3:
            need[3] = max(220.0, areas[3] / 200.0)
        elif c == 4:
            need[4] = max(200.0, 2.2 * np.sqrt(areas[4]))
    order = list(classes)
    rng.shuffle(order)
    total = hi - lo
    want = np.array([need[c] for c in order]) * rng.uniform(1.0, 1.6, len(order))
    if want.sum() > total:
        want *= total / want.sum()
    slack = total - want.sum()
    gaps = rng.dirichlet(np.ones(len(order) + 1)) * slack
    out, x = {}, float(lo)
    for c, wc, g in zip(order, want, gaps):
        x += g
        out[c] = (int(x), int(x + wc))
        x += wc
    return out
