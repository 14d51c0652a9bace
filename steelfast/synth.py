"""Synthetic Severstal-like data: rolled-steel images with four classes of polygon defects.

No real training set ships with steelfast, so demos, tests and benchmarks use images made here.
:func:`make_dataset` writes the Kaggle layout::

    OUT/train_images/<id>.jpg      1600x256 JPEG, grey stored as RGB (R = G = B), quality 90
    OUT/test_images/<id>.jpg
    OUT/train.csv                  new format ImageId,ClassId,EncodedPixels (defect rows only)
    OUT/test_labels.csv            the same for the test images, so predictions can be scored
    OUT/sample_submission.csv      ImageId,EncodedPixels,ClassId with "1 409600" and class 0, like Kaggle's

How an image is made (:func:`synth_image`):

* steel: a base grey level, a smooth illumination gradient, mottling stretched along the rolling
  direction (vertical in the images), column streaks that fade in and out, sensor noise; in some
  images the plate ends and the rest of the frame is black;
* defects: the classes present are drawn from the real class combinations, the total area of each
  class from a log-normal fitted to the real per-class areas (see :data:`REAL_STATS`). Each class
  gets its own horizontal segment of the plate, so masks never overlap, and its own look:

  1. clusters of small quadrilaterals filled with dark and bright pits;
  2. one or two small, narrow bright marks with a dark core;
  3. long vertical or slanted scratches (small areas) or large streaked bands (large areas), with
     stripes along the scratch direction;
  4. large irregular dark blobs with a rough interior and a bright rim.

  The masks are the filled polygons and the appearance is rendered through the same masks, so the
  image shows the defect exactly where the mask says.

Every image depends only on ``(seed, split, index)``: the same seed gives identical files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import cv2
import numpy as np
import pandas as pd

from steelfast._io import atomic_write_bytes

__all__ = [
    "HEIGHT",
    "REAL_STATS",
    "WIDTH",
    "make_dataset",
    "synth_image",
]

HEIGHT, WIDTH = 256, 1600
_NPIX = HEIGHT * WIDTH

#: Statistics of the real Kaggle train set (12,568 images), from the per-image index in
#: ``shared/data/severstal/extras/AZIO-126_index.csv``: share of images with each class, mean area
#: fraction over all images, median area (pixels) of a class where present, the share of images
#: with 0..3 defect classes, and the share of each class combination.
REAL_STATS: dict[str, object] = {
    "n_images": 12568,
    "presence": {1: 0.0714, 2: 0.0197, 3: 0.4098, 4: 0.0637},
    "mean_area_fraction": {1: 0.00076, 2: 0.000162, 3: 0.025507, 4: 0.005349},
    "median_area_px": {1: 3326, 2: 2944, 3: 11954, 4: 25357},
    "classes_per_image": {0: 0.4696, 1: 0.4964, 2: 0.0338, 3: 0.0002},
    "combinations": {
        (): 0.469605,
        (3,): 0.378660,
        (1,): 0.061187,
        (4,): 0.041057,
        (3, 4): 0.022597,
        (2,): 0.015516,
        (1, 3): 0.007241,
        (1, 2): 0.002785,
        (2, 3): 0.001114,
        (1, 2, 3): 0.000159,
        (2, 4): 0.000080,
    },
}

_COMBOS = list(REAL_STATS["combinations"])  # type: ignore[arg-type]
_COMBO_P = np.array(list(REAL_STATS["combinations"].values()))  # type: ignore[union-attr]
_COMBO_P = _COMBO_P / _COMBO_P.sum()

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

PathLike = Union[str, "os.PathLike[str]"]


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


def _steel(rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """Defect-free rolled steel.

    Returns:
        (img float32 (H, W) in grey levels, (x_lo, x_hi) the columns that show plate, not black).
    """
    h, w = HEIGHT, WIDTH
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
# defect geometry: polygons (K, 2) int32 of (x, y), drawn inside a segment [xs, xe)


def _lognormal_area(rng: np.random.Generator, cls: int) -> float:
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
    cy0 = rng.uniform(50, HEIGHT - 50)
    spread_x = min(seg / 3, 30 + 14 * n)
    polys = []
    for _ in range(n):
        a = area / n * rng.uniform(0.6, 1.4)
        asp = rng.uniform(1.0, 2.4)  # taller than wide, like the real pits
        pw = np.sqrt(a / asp)
        cx = cx0 + rng.normal(0, spread_x)
        cy = np.clip(cy0 + rng.normal(0, 55), pw * asp / 2, HEIGHT - pw * asp / 2)
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
        y0 = _pick(rng, 0, HEIGHT - length)
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
            width = max(5.0, area / n / min(length, HEIGHT / np.cos(angle)))
            y0 = _pick(rng, -40, HEIGHT - length * np.cos(angle))
            x_end = np.sin(angle) * length
            x0 = _pick(rng, xs + width - min(0, x_end), xe - width - max(0, x_end))
            polys.append(_strip(rng, x0, y0, length, width, angle, 1.5))
        return polys
    if alone and rng.random() < 0.35:  # a long slanted band across the plate (rolled-in streak)
        band_h = rng.uniform(50, 130)
        length = min(seg * rng.uniform(0.6, 1.0), area / band_h)
        band_h = min(area / length, 200.0)
        x0 = _pick(rng, xs, xe - length)
        y0 = _pick(rng, band_h / 2, HEIGHT - band_h / 2)
        slope = rng.normal(0, 0.06)
        k = max(3, int(length // 80) + 1)
        xsq = np.linspace(x0, x0 + length, k)
        yc = y0 + (xsq - x0) * slope + np.cumsum(rng.normal(0, 2.0, k))
        top = np.stack([xsq, yc - band_h / 2 * rng.uniform(0.85, 1.15, k)], axis=1)
        bot = np.stack([xsq, yc + band_h / 2 * rng.uniform(0.85, 1.15, k)], axis=1)
        return [np.concatenate([top, bot[::-1]])]
    # A wide band across the full height (a streaked region), slanted a little.
    width = float(np.clip(area / HEIGHT, 30, seg - 4))
    angle = float(np.clip(rng.normal(0, 0.12), -0.3, 0.3))
    x_end = np.tan(angle) * HEIGHT
    x0 = _pick(rng, xs + width / 2 - min(0, x_end), xe - width / 2 - max(0, x_end))
    return [_strip(rng, x0, -8, HEIGHT / np.cos(angle) + 16, width, angle, 3.0)]


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
        cy = _pick(rng, 0.6 * ry, HEIGHT - 0.6 * ry)
        polys.append(
            np.stack([cx + rx * rad * np.cos(theta), cy + ry * rad * np.sin(theta)], axis=1)
        )
    return polys


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


def _render(
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
    y0, y1 = max(0, rows[0] - 2), min(HEIGHT, rows[-1] + 3)
    x0, x1 = max(0, xs + cols[0] - 2), min(WIDTH, xs + cols[-1] + 3)
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


def _segments(
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


def synth_image(
    rng: np.random.Generator, *, classes: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Make one synthetic steel image and its defect masks.

    Args:
        rng: The random generator (the image depends only on its state).
        classes: Defect classes (1..4) to put in the image; by default they are drawn from the real
            class combinations (:data:`REAL_STATS`), so 47 % of the images are defect-free.

    Returns:
        (image uint8 (256, 1600), masks uint8 (4, 256, 1600) with values 0/1, channel c = class c+1).
        The class masks never overlap.

    Raises:
        TypeError: ``rng`` is not a ``numpy.random.Generator``.
        ValueError: ``classes`` holds something other than distinct ints in 1..4.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if classes is None:
        combo = _COMBOS[int(rng.choice(len(_COMBOS), p=_COMBO_P))]
    else:
        combo = tuple(classes)
        if len(set(combo)) != len(combo) or not all(
            isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 1 <= c <= 4
            for c in combo
        ):
            raise ValueError(f"classes must be distinct ints in 1..4, got {classes!r}")
        combo = tuple(sorted(int(c) for c in combo))
    img, (lo, hi) = _steel(rng)
    masks = np.zeros((4, HEIGHT, WIDTH), dtype=np.uint8)
    if combo:
        areas = {c: _lognormal_area(rng, c) for c in combo}
        segs = _segments(rng, combo, areas, lo, hi)
        for c in combo:
            xs, xe = segs[c]
            if c == 1:
                polys = _geom_pits(rng, areas[c], xs, xe)
            elif c == 2:
                polys = _geom_marks(rng, areas[c], xs, xe)
            elif c == 3:
                polys = _geom_scratches(rng, areas[c], xs, xe, alone=len(combo) == 1)
            else:
                polys = _geom_blobs(rng, areas[c], xs, xe)
            _render(rng, img, masks[c - 1], polys, c, xs, xe)
    gray = np.clip(img, 0, 255).astype(np.uint8)
    return gray, masks


# ---------------------------------------------------------------------------------------------
# dataset writer


def _image_id(rng: np.random.Generator, taken: set[str]) -> str:
    while True:
        iid = f"{int(rng.integers(0, 16**9)):09x}.jpg"
        if iid not in taken:
            taken.add(iid)
            return iid


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write_bytes(path, df.to_csv(index=False, lineterminator="\n").encode())


def _encode_jpeg(gray: np.ndarray, quality: int) -> bytes:
    rgb = cv2.merge([gray, gray, gray])  # grey stored as RGB, like the Kaggle files
    ok, buf = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV only fails here on allocation errors
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


def make_dataset(
    out_dir: PathLike,
    n_train: int,
    n_test: int,
    seed: int = 0,
    progress: bool = True,
    *,
    quality: int = 90,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic dataset in the Kaggle layout (see the module docstring).

    Args:
        out_dir: Output folder; created if missing.
        n_train: Number of training images (>= 0).
        n_test: Number of test images (>= 0).
        seed: Random seed; the same seed gives byte-identical files. Image ``i`` of a split depends
            only on ``(seed, split, i)``, so a larger ``n_train`` extends a smaller one.
        progress: Show a tqdm progress bar.
        quality: JPEG quality (1..100).
        overwrite: Replace an existing dataset in ``out_dir`` (its ``*.jpg`` in the two image
            folders are deleted first). Without it an existing ``train.csv`` is an error.

    Returns:
        Path: ``out_dir``.

    Raises:
        ValueError: negative counts, a bad seed or quality.
        FileExistsError: ``out_dir`` already holds a dataset and ``overwrite`` is False.
    """
    n_train = _check_count("n_train", n_train)
    n_test = _check_count("n_test", n_test)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if (
        isinstance(quality, bool)
        or not isinstance(quality, (int, np.integer))
        or not 1 <= quality <= 100
    ):
        raise ValueError(f"quality must be an int in 1..100, got {quality!r}")
    from steelfast import rle  # the compiled core; imported here so drawing works without it

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output must be a folder, got a file: {out}")
    if (out / "train.csv").exists() and not overwrite:
        raise FileExistsError(
            f"{out} already holds a dataset (train.csv); pass overwrite=True (--overwrite) to replace it"
        )
    dirs = {"train": out / "train_images", "test": out / "test_images"}
    for d in dirs.values():
        if overwrite and d.is_dir():
            for f in d.glob("*.jpg"):
                f.unlink()
        d.mkdir(parents=True, exist_ok=True)

    from tqdm.auto import tqdm

    taken: set[str] = set()
    rows: dict[str, list[tuple[str, int, str]]] = {"train": [], "test": []}
    test_ids: list[str] = []
    bar = tqdm(total=n_train + n_test, desc="synth", unit="img", disable=not progress)
    try:
        for split_no, (split, n) in enumerate((("train", n_train), ("test", n_test))):
            for i in range(n):
                rng = np.random.default_rng(
                    np.random.SeedSequence(int(seed), spawn_key=(split_no, i))
                )
                iid = _image_id(rng, taken)
                gray, masks = synth_image(rng)
                atomic_write_bytes(dirs[split] / iid, _encode_jpeg(gray, int(quality)))
                for c in range(4):
                    if masks[c].any():
                        rows[split].append((iid, c + 1, rle.encode(masks[c])))
                if split == "test":
                    test_ids.append(iid)
                bar.update(1)
    finally:
        bar.close()

    cols = ["ImageId", "ClassId", "EncodedPixels"]
    _write_csv(out / "train.csv", pd.DataFrame(sorted(rows["train"]), columns=cols))
    _write_csv(out / "test_labels.csv", pd.DataFrame(sorted(rows["test"]), columns=cols))
    sub = pd.DataFrame({"ImageId": sorted(test_ids), "EncodedPixels": f"1 {_NPIX}", "ClassId": 0})
    _write_csv(out / "sample_submission.csv", sub)
    return out
