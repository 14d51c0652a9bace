"""Synthetic Severstal-like data: rolled-steel images with four classes of polygon defects.

In: a seed (and image counts). Out: one image and its masks (:func:`synth_image`), or a folder in
the Kaggle layout (:func:`make_dataset`). No real training set ships with steelfast, so demos,
tests and benchmarks use images made here.
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
  class from a log-normal fitted to the real per-class areas (see :data:`steelfast.severstal.REAL_STATS`). Each class
  gets its own horizontal segment of the plate, so masks never overlap, and its own look:

  1. clusters of small quadrilaterals filled with dark and bright pits;
  2. one or two small, narrow bright marks with a dark core;
  3. long vertical or slanted scratches (small areas) or large streaked bands (large areas), with
     stripes along the scratch direction;
  4. large irregular dark blobs with a rough interior and a bright rim.

  The masks are the filled polygons and the appearance is rendered through the same masks, so the
  image shows the defect exactly where the mask says. The geometry is in
  :mod:`steelfast.data.synth_shapes`, the texture and looks in :mod:`steelfast.data.synth_texture`.

Every image depends only on ``(seed, split, index)``: the same seed gives identical files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from steelfast import rle
from steelfast._io import PathLike, atomic_write_bytes
from steelfast._validate import check_int
from steelfast.data.synth_shapes import class_segments, defect_polygons, lognormal_area
from steelfast.data.synth_texture import render_defect, steel_texture
from steelfast.images import list_images
from steelfast.severstal import REAL_STATS, SHAPE

__all__ = ["make_dataset", "synth_image"]

_COMBOS = list(REAL_STATS["combinations"])  # type: ignore[arg-type]
_COMBO_P = np.array(list(REAL_STATS["combinations"].values()))  # type: ignore[union-attr]
_COMBO_P = _COMBO_P / _COMBO_P.sum()


def synth_image(
    rng: np.random.Generator, *, classes: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Make one synthetic steel image and its defect masks.

    Args:
        rng: The random generator (the image depends only on its state).
        classes: Defect classes (1..4) to put in the image; by default they are drawn from the real
            class combinations (:data:`steelfast.severstal.REAL_STATS`), so 47 % of the images are defect-free.

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
        try:
            combo = tuple(sorted(check_int("classes", c, low=1, high=4) for c in classes))
        except (TypeError, ValueError):
            combo = None
        if combo is None or len(set(combo)) != len(combo):
            raise ValueError(f"classes must be distinct ints in 1..4, got {classes!r}")
    img, (lo, hi) = steel_texture(rng)
    masks = np.zeros((4, *SHAPE), dtype=np.uint8)
    if combo:
        areas = {c: lognormal_area(rng, c) for c in combo}
        segs = class_segments(rng, combo, areas, lo, hi)
        for c in combo:
            xs, xe = segs[c]
            polys = defect_polygons(rng, c, areas[c], xs, xe, alone=len(combo) == 1)
            render_defect(rng, img, masks[c - 1], polys, c, xs, xe)
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
        overwrite: Replace an existing dataset in ``out_dir`` (the image files in the two image
            folders are deleted first). Without it an existing ``train.csv``, or an image already in
            ``train_images/`` or ``test_images/`` (e.g. left by an interrupted run), is an error.

    Returns:
        Path: ``out_dir``.

    Raises:
        TypeError: a count, seed or quality that is not an int.
        ValueError: negative counts, a negative seed, a quality outside 1..100.
        FileExistsError: ``out_dir`` already holds a dataset, or images in its image folders, and
            ``overwrite`` is False.
    """
    n_train = check_int("n_train", n_train, low=0)
    n_test = check_int("n_test", n_test, low=0)
    seed = check_int("seed", seed, low=0)
    quality = check_int("quality", quality, low=1, high=100)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output must be a folder, got a file: {out}")
    if (out / "train.csv").exists() and not overwrite:
        raise FileExistsError(
            f"{out} already holds a dataset (train.csv); pass overwrite=True (--overwrite) to replace it"
        )
    dirs = {"train": out / "train_images", "test": out / "test_images"}
    # Images left without a train.csv (an interrupted run) would pass for defect-free ones next to the new labels.
    stale = {d: list_images(d, regular_only=False) if d.is_dir() else [] for d in dirs.values()}
    for d, files in stale.items():
        if files and not overwrite:
            raise FileExistsError(
                f"{d} already holds {len(files)} image(s), e.g. left by an interrupted run, that the new labels "
                "would not list; pass overwrite=True (--overwrite) to replace them"
            )
    for d, files in stale.items():
        for f in files:
            f.unlink()
        d.mkdir(parents=True, exist_ok=True)

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
    sub = pd.DataFrame({"ImageId": sorted(test_ids), "EncodedPixels": f"1 {SHAPE[0] * SHAPE[1]}", "ClassId": 0})
    _write_csv(out / "sample_submission.csv", sub)
    return out
