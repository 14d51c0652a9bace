"""Mixing real and synthetic training images at a ratio, without leaking a scored image.

Flow: a model's real training set (:class:`~steelfast.data.real.LabelledSet`), the ImageIds it
will be scored on, and a table of real defect masks → :class:`SynthMix` → the training set plus
``round(ratio × len(train))`` synthetic images made by :mod:`steelfast.data.realsynth` of that
training set's own fully labelled images (sheets and defect texture), pasting defect shapes from
the mask table minus the scored images' rows.

:func:`~steelfast.training.crossval.out_of_fold` calls it once per fold (the fold's images are
excluded from every part), and :func:`~steelfast.training.crossval.fit_gated` once for the final
model (nothing is scored there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from steelfast._io import PathLike
from steelfast._validate import check_bool, check_choice, check_fraction
from steelfast.data.real import LabelledSet
from steelfast.data.realsynth import SHEETS, RealParts, load_shape_bank, synthesize
from steelfast.labels import read_labels

__all__ = ["SynthMix"]


def _check_settings(ratio: float, sheets: str, gate: bool) -> float:
    """Return ``ratio`` as a float if it is in (0, 100], ``sheets`` is one of :data:`SHEETS` and
    ``gate`` a bool, else raise.

    Raises:
        TypeError: ``ratio`` is not a number, or ``gate`` not a bool.
        ValueError: ``ratio`` is 0 or out of range, or ``sheets`` is unknown; the message quotes it.
    """
    ratio = check_fraction("synthetic ratio", ratio, low=0.0, high=100.0)
    if ratio == 0:
        raise ValueError("synthetic ratio must be > 0, got 0 (leave the mix out for real images only)")
    check_choice("sheets", sheets, SHEETS)
    check_bool("gate", gate)
    return ratio


@dataclass
class SynthMix:
    """Synthetic images made of real parts, added to each model's real training images.

    Attributes:
        ratio: Synthetic images per real training image (weakly labelled ones count too); > 0.
        shapes: Real defect masks to paste: new-format rows ``ImageId, ClassId, EncodedPixels``
            (the training labels themselves, or a larger bank such as the 3,689 masks of
            ``train_partial.csv``).
        sheets: ``"all"`` (every fully labelled training image is a sheet, its defects kept) or
            ``"defect-free"`` (only clean sheets: every defect is pasted).
        gate: The synthetic images train the gate too (True), or the segmentation maps only
            (False: their class presence is left out of the gate loss, so the gate learns from
            real images alone).
    """

    ratio: float
    shapes: pd.DataFrame
    sheets: str = "all"
    gate: bool = True

    def __post_init__(self) -> None:
        self.ratio = _check_settings(self.ratio, self.sheets, self.gate)
        self.gate = bool(self.gate)

    @classmethod
    def from_labels(cls, ratio: float, labels: PathLike, *, sheets: str = "all", gate: bool = True) -> SynthMix:
        """A mix whose shapes come from a label CSV (either Kaggle format; defect rows are used)."""
        _check_settings(ratio, sheets, gate)  # before the file is read
        frame = read_labels(labels)
        return cls(ratio, frame[frame["EncodedPixels"] != ""].reset_index(drop=True), sheets, gate)

    def __call__(self, train: LabelledSet, scored: Sequence[str], seed: int) -> LabelledSet:
        """``train`` plus its synthetic images; no part comes from an image in ``scored``."""
        overlap = set(train.ids) & set(scored)
        if overlap:
            raise ValueError(f"the training set holds {len(overlap)} scored image(s), e.g. {sorted(overlap)[0]!r}")
        n = max(1, round(self.ratio * len(train)))
        bank = load_shape_bank(self.shapes, exclude=scored)
        synth = synthesize(RealParts.from_set(train, bank, sheets=self.sheets), n, seed=seed)
        if not self.gate:
            synth.gate[:] = False
        return LabelledSet.concat([train, synth])

    def describe(self) -> dict:
        """JSON-ready settings for checkpoint metadata."""
        return {"ratio": self.ratio, "sheets": self.sheets, "shape_rows": int(len(self.shapes)),
                "generator": "steelfast.data.realsynth", **({} if self.gate else {"trains": "maps only, not the gate"})}
