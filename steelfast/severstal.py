"""The Severstal dataset's facts, in one place: classes, image shape, class prevalence, the
statistics synthetic data imitates, and the grey-level normalisation the models are trained with.

The prevalences are the share of the 12,568 Kaggle train images that hold each class (897, 247,
5,150 and 801 images; 5,902 images have no defect), counted from a public per-image index of the
Kaggle train set. Real folders from a steel line are assumed to look like that set; tuning on a
hand-picked, defect-rich sample must re-weight its positives and negatives to these rates, or it
will predict far too many masks on real, mostly clean, images.
"""

from __future__ import annotations

__all__ = [
    "CLASSES",
    "CLASS_NAMES",
    "DEFAULT_MEAN",
    "DEFAULT_STD",
    "PREVALENCE",
    "REAL_STATS",
    "SHAPE",
    "TRAIN_IMAGES",
]

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

#: Statistics of the real Kaggle train set (12,568 images), from the per-image index in
#: ``shared/data/severstal/extras/AZIO-126_index.csv``: share of images with each class, mean area
#: fraction over all images, median area (pixels) of a class where present, the share of images
#: with 0..3 defect classes, and the share of each class combination.
REAL_STATS: dict[str, object] = {
    "n_images": TRAIN_IMAGES,
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

#: Mean and std of the grey levels in 0..1 units, measured on the 55 real Severstal train JPEGs in
#: ``shared/data/severstal/images`` (0.3581 and 0.1745): the U-Net's default normalisation.
DEFAULT_MEAN = 0.358
DEFAULT_STD = 0.175
