"""A synthetic generator built from real parts: real sheets, real defect shapes, real defect texture.

Flow: fully labelled real images (:class:`~steelfast.data.real.LabelledSet`) + a bank of real
defect masks by class → :class:`RealParts` → :func:`synthesize` → a new fully labelled
:class:`~steelfast.data.real.LabelledSet`.

Each synthetic image is

* a **real sheet** from the parts, flipped at random, with its own real masks (its defect-free
  regions are real defect-free steel, its defects stay labelled), or only real defect-free
  sheets (``sheets="defect-free"``), so that every defect is a pasted one;
* plus, with probability ``paste_prob``, one or two **pasted defects**: the class is drawn
  uniformly among the classes that have both shapes and examples (so rare classes are seen far
  more often than in the real rates); the **shape and position** come from a real mask of that
  class (``shapes``: e.g. the 3,689 masks of ``train_partial.csv`` whose images are not in the
  set being scored), redrawn when it would fall mostly off the sheet (up to 8 tries, else no
  paste); the **appearance** is the local texture of a real defect of that class in the parts (the image minus its large-scale brightness, inside the defect's bounding box),
  resized onto the shape's bounding box and added with feathered edges.

The labels of the pasted shape replace those of other classes under it. Sheet artefacts (edge
bands, blur, JPEG, brightness) are left to the training augmentation
(:class:`~steelfast.data.augment.SteelAugment`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from steelfast._io import PathLike
from steelfast._validate import check_choice, check_fraction, check_positive_int
from steelfast.data.real import LabelledSet
from steelfast.rle import decode
from steelfast.severstal import CLASSES, SHAPE

__all__ = ["SHEETS", "RealParts", "load_shape_bank", "synthesize"]

#: What a synthetic image's sheet may be: any fully labelled real image (its defects kept), or only
#: the defect-free ones (every defect of the synthetic set is then a pasted one).
SHEETS = ("all", "defect-free")

#: Gaussian sigma (pixels) of the large-scale brightness removed to get a defect's texture.
TEXTURE_SIGMA = 25.0
#: Grey level below which a pixel counts as the dark background beside the sheet.
OFF_SHEET = 20


def load_shape_bank(
    labels: PathLike | pd.DataFrame, *, exclude: Sequence[str] = ()
) -> dict[int, list[str]]:
    """Real defect masks by class, as RLE strings, from a new-format label table.

    Args:
        labels: ``ImageId,ClassId,EncodedPixels`` CSV path or frame (e.g. ``train_partial.csv``).
        exclude: ImageIds whose masks must not be used (the images being scored).

    Returns:
        ``{class: [rle, ...]}`` for classes 1..4 (empty lists where a class has no mask).
    """
    frame = labels if isinstance(labels, pd.DataFrame) else pd.read_csv(labels, dtype=str, keep_default_na=False)
    missing = {"ImageId", "ClassId", "EncodedPixels"} - set(frame.columns)
    if missing:
        raise ValueError(f"a shape bank needs columns ImageId, ClassId, EncodedPixels; missing {sorted(missing)}")
    keep = ~frame["ImageId"].isin(set(exclude)) & (frame["EncodedPixels"].str.strip() != "")
    frame = frame[keep]
    return {c: frame.loc[frame["ClassId"].astype(str) == str(c), "EncodedPixels"].tolist() for c in CLASSES}


@dataclass
class RealParts:
    """The real material a synthetic set is made of.

    Attributes:
        images: uint8 (M, 256, 1600) fully labelled real images (sheets and texture examples).
        masks: uint8 (M, 4, 256, 1600) their masks.
        shapes: ``{class: [rle, ...]}`` real defect masks (shape and position).
        sheets: Indices into ``images`` of the images used as sheets (default: all).
    """

    images: np.ndarray
    masks: np.ndarray
    shapes: Mapping[int, Sequence[str]]
    sheets: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.sheets is None:
            self.sheets = np.arange(len(self.images))
        if len(self.sheets) == 0:
            raise ValueError("synthetic parts need at least one sheet")

    @classmethod
    def from_set(
        cls, data: LabelledSet, shapes: Mapping[int, Sequence[str]], *, sheets: str = "all"
    ) -> RealParts:
        """The fully labelled images of ``data`` and a shape bank (weak images are left out).

        Args:
            sheets: ``"all"`` (every fully labelled image, its real defects kept and labelled) or
                ``"defect-free"`` (only images without any defect: then every defect of the
                synthetic set is a pasted one).
        """
        check_choice("sheets", sheets, SHEETS)
        full = np.flatnonzero(data.full)
        if len(full) == 0:
            raise ValueError("synthetic parts need at least one fully labelled real image")
        masks = np.stack([data.masks[i] for i in full]).astype(np.uint8)
        use = np.arange(len(full))
        if sheets == "defect-free":
            use = np.flatnonzero(~masks.reshape(len(full), -1).any(axis=1))
            if len(use) == 0:
                raise ValueError("sheets='defect-free' but no fully labelled image is defect-free")
        return cls(data.images[full], masks, {c: list(shapes.get(c, [])) for c in CLASSES}, use)

    def pasteable(self) -> list[int]:
        """Classes with at least one shape and one real example to copy texture from."""
        return [c for c in CLASSES if self.shapes[c] and self.masks[:, c - 1].any()]


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


def _paste(image: np.ndarray, masks: np.ndarray, parts: RealParts, c: int, rng: np.random.Generator) -> None:
    """Add one defect of class ``c`` to ``image`` (float32, in place) and ``masks`` (in place)."""
    for _ in range(8):  # a shape must land on the sheet, not on the dark background beside it
        shape = decode(parts.shapes[c][int(rng.integers(len(parts.shapes[c])))], SHAPE)
        if rng.random() < 0.5:
            shape = np.ascontiguousarray(shape[:, ::-1])
        under = image[shape.astype(bool)]
        if under.size and float(np.mean(under < OFF_SHEET)) <= 0.2:
            break
    else:
        return
    sources = np.flatnonzero(parts.masks[:, c - 1].reshape(len(parts.masks), -1).any(axis=1))
    k = int(sources[int(rng.integers(len(sources)))])
    src = parts.images[k].astype(np.float32)
    texture = src - cv2.GaussianBlur(src, (0, 0), TEXTURE_SIGMA)
    y0, y1, x0, x1 = _bbox(parts.masks[k, c - 1])
    d0, d1, e0, e1 = _bbox(shape)
    patch = cv2.resize(texture[y0:y1, x0:x1], (e1 - e0, d1 - d0), interpolation=cv2.INTER_LINEAR)
    alpha = cv2.GaussianBlur(shape[d0:d1, e0:e1].astype(np.float32), (0, 0), 1.5)
    gain = float(rng.uniform(0.8, 1.25))
    image[d0:d1, e0:e1] += alpha * patch.reshape(alpha.shape) * gain
    on = shape.astype(bool)
    masks[:, on] = 0
    masks[c - 1, on] = 1


def synthesize(
    parts: RealParts, n: int, *, seed: int = 0, paste_prob: float = 0.8, prefix: str = "synth"
) -> LabelledSet:
    """``n`` synthetic fully labelled images made of ``parts`` (see the module docstring).

    Raises:
        ValueError: ``n`` < 1, ``paste_prob`` outside [0, 1], or no class can be pasted while
            ``paste_prob`` > 0.
    """
    n = check_positive_int("n", n)
    paste_prob = check_fraction("paste_prob", paste_prob, low=0.0, high=1.0)
    classes = parts.pasteable()
    if paste_prob > 0 and not classes:
        raise ValueError("no class has both a real shape and a real example to paste")
    rng = np.random.default_rng(seed)
    images = np.empty((n, *SHAPE), np.uint8)
    all_masks: list[np.ndarray | None] = []
    for i in range(n):
        j = int(parts.sheets[int(rng.integers(len(parts.sheets)))])
        image, masks = parts.images[j].astype(np.float32), parts.masks[j].copy()
        if rng.random() < 0.5:
            image, masks = image[:, ::-1].copy(), masks[:, :, ::-1].copy()
        if rng.random() < 0.5:
            image, masks = image[::-1].copy(), masks[:, ::-1].copy()
        if rng.random() < paste_prob:
            for _ in range(1 + int(rng.random() < 0.3)):
                _paste(image, masks, parts, classes[int(rng.integers(len(classes)))], rng)
        images[i] = np.clip(image + 0.5, 0, 255).astype(np.uint8)
        all_masks.append(masks)
    presence = np.stack([m.reshape(len(CLASSES), -1).any(axis=1) for m in all_masks])
    return LabelledSet([f"{prefix}_{i:05d}.png" for i in range(n)], images, presence, np.ones(n, bool), all_masks,
                       {"synthetic": {"generator": "steelfast.data.realsynth", "images": n, "seed": seed,
                                      "paste_prob": paste_prob, "sheets": int(len(parts.sheets))}})
