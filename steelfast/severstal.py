"""The Severstal dataset's facts, in one place: classes, image shape, class prevalence.

The prevalences are the share of the 12,568 Kaggle train images that hold each class (897, 247,
5,150 and 801 images; 5,902 images have no defect), counted from a public per-image index of the
Kaggle train set. Real folders from a steel line are assumed to look like that set; tuning on a
hand-picked, defect-rich sample must re-weight its positives and negatives to these rates, or it
will predict far too many masks on real, mostly clean, images.
"""

from __future__ import annotations

__all__ = ["CLASSES", "CLASS_NAMES", "PREVALENCE", "SHAPE", "TRAIN_IMAGES"]

#: Kaggle ClassIds, in channel order.
CLASSES: tuple[int, ...] = (1, 2, 3, 4)
#: Short names used in tables and overlay legends (the competition gave numbers only; these
#: describe what each class looks like).
CLASS_NAMES: dict[int, str] = {1: "pits/spots", 2: "thin vertical", 3: "scratches/scale", 4: "large patches"}
#: (height, width) of every Severstal image.
SHAPE: tuple[int, int] = (256, 1600)
#: Images in the Kaggle train set.
TRAIN_IMAGES = 12568
#: Share of Kaggle train images that hold each class (1..4).
PREVALENCE: tuple[float, ...] = (897 / 12568, 247 / 12568, 5150 / 12568, 801 / 12568)
