"""steelfast: fast surface-defect segmentation for steel sheets (Kaggle Severstal layout).

The compiled core (:mod:`steelfast._core`) does RLE encoding/decoding, Dice and fused post-processing;
the modules on top of it read labels, make synthetic data, train a small U-Net and run it over folders.
"""

from __future__ import annotations

from steelfast import metrics, rle
from steelfast._version import __version__
from steelfast.metrics import dice, dice_batch, dice_rle, kaggle_score, kaggle_score_report
from steelfast.rle import decode, decode_batch, encode, encode_batch, encode_probs

__all__ = [
    "Segmenter",
    "__version__",
    "decode",
    "decode_batch",
    "dice",
    "dice_batch",
    "dice_rle",
    "encode",
    "encode_batch",
    "encode_probs",
    "kaggle_score",
    "kaggle_score_report",
    "metrics",
    "rle",
    "segment_folder",
    "segment_with_ray",
    "iter_segment_folder",
]


def __getattr__(name: str):
    # The inference facade imports torch; load it on first use so `import steelfast` stays light.
    if name == "Segmenter":
        from steelfast.inference.segmenter import Segmenter

        return Segmenter
    if name in ("segment_folder", "iter_segment_folder"):
        from steelfast.inference import pipeline

        return getattr(pipeline, name)
    if name == "segment_with_ray":  # Ray itself is imported only when the function runs
        from steelfast.inference.ray_engine import segment_with_ray

        return segment_with_ray
    raise AttributeError(f"module 'steelfast' has no attribute {name!r}")
