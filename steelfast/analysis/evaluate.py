"""Scoring a model on labelled images: the per-class table users read before trusting a model.

In: a model, an image folder and its labels. Out: an :class:`EvaluationResult` (the table below,
the per-pair Dice, failures) and, optionally, truth/prediction overlay PNGs.

Flow: a model + an image folder + a label file → submission rows (the main job's own path,
:func:`steelfast.inference.pipeline.segment_folder`) → per (image, class) pairs → :func:`pair_report`.

The table has one row per class and one for all classes:

* ``score``: mean Dice over all pairs (the Kaggle metric; 1 when both masks are empty);
* ``all_empty``: the same score for a submission that predicts nothing;
* ``dice_defects``: mean Dice over the pairs whose truth has a defect;
* ``fp_rate_empty``: share of defect-free pairs that got a mask (each costs a whole point);
* ``precision``, ``recall``: image-level, "the class is present" against "a mask was predicted".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steelfast._io import PathLike
from steelfast._validate import as_shape
from steelfast.analysis.overlay import save_overlay
from steelfast.images import read_gray
from steelfast.inference.decode import list_folder
from steelfast.inference.pipeline import segment_folder
from steelfast.labels import read_labels
from steelfast.metrics import dice_rle_batch, expected_score
from steelfast.rle import decode_batch
from steelfast.severstal import CLASSES, SHAPE

__all__ = ["SAVE_FORMATS", "EvaluationResult", "check_save_path", "evaluate_folder", "format_report", "pair_report",
           "plot_report"]

#: What :meth:`EvaluationResult.save` writes, by suffix: the summary (the table, the scores, the
#: failures), one row per (image, class) pair, or the chart of :func:`plot_report`.
SAVE_FORMATS = {".json": "summary", ".csv": "pairs", ".png": "chart"}


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


def pair_report(truth_has: np.ndarray, pred_has: np.ndarray, dice: np.ndarray) -> pd.DataFrame:
    """The per-class table of the module docstring.

    Args:
        truth_has: bool (N, C): the truth mask of the pair is non-empty.
        pred_has: bool (N, C): the predicted mask is non-empty.
        dice: float (N, C): Dice of each pair (1 when both are empty).

    Returns:
        DataFrame indexed by ClassId (1..C, then ``"all"``).

    Raises:
        ValueError: The three arrays differ in shape or are not 2-D.
    """
    t, p, d = np.asarray(truth_has, bool), np.asarray(pred_has, bool), np.asarray(dice, float)
    if t.ndim != 2 or t.shape != p.shape or t.shape != d.shape:
        raise ValueError(f"truth_has, pred_has and dice must be equal (N, C) arrays, got {t.shape}, {p.shape}, {d.shape}")
    rows = {}
    for c in range(t.shape[1]):
        rows[c + 1] = _row(t[:, c], p[:, c], d[:, c])
    rows["all"] = _row(t.ravel(), p.ravel(), d.ravel())
    frame = pd.DataFrame(rows).T
    frame.index.name = "ClassId"
    return frame.astype({"pairs": int, "truth_defects": int, "pred_defects": int})


def _row(t: np.ndarray, p: np.ndarray, d: np.ndarray) -> dict[str, float]:
    return {
        "pairs": len(t),
        "truth_defects": int(t.sum()),
        "pred_defects": int(p.sum()),
        "score": float(d.mean()) if len(d) else float("nan"),
        "all_empty": float((~t).mean()) if len(t) else float("nan"),
        "dice_defects": float(d[t].mean()) if t.any() else float("nan"),
        "fp_rate_empty": _ratio((p & ~t).sum(), (~t).sum()),
        "precision": _ratio((p & t).sum(), p.sum()),
        "recall": _ratio((p & t).sum(), t.sum()),
    }


def format_report(report: pd.DataFrame) -> str:
    """The table as fixed-width text (NaN shown as "-")."""
    cols = ["pairs", "truth_defects", "pred_defects", "score", "all_empty", "dice_defects",
            "fp_rate_empty", "precision", "recall"]
    text = report[cols].to_string(float_format=lambda v: f"{v:.3f}", na_rep="-")
    return text


@dataclass
class EvaluationResult:
    """Outcome of :func:`evaluate_folder`.

    Attributes:
        report: :func:`pair_report` table.
        pairs: One row per (ImageId, ClassId): ``pred``, ``truth`` (RLE) and ``dice``.
        failures: Images that could not be segmented (or are not of the labels' size), ``{name: reason}``.
        unmatched: ImageIds of the label file that are not in the folder (not scored).
    """

    report: pd.DataFrame
    pairs: pd.DataFrame
    failures: dict[str, str]
    unmatched: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        """The Kaggle score over all pairs."""
        return float(self.report.loc["all", "score"])

    @property
    def all_empty(self) -> float:
        """The score of predicting nothing on the same pairs."""
        return float(self.report.loc["all", "all_empty"])

    def expected_score(self, prevalence: Any = None) -> dict[str, Any]:
        """The score expected on a folder with other class rates (:func:`steelfast.metrics.expected_score`):
        ``prevalence`` is the share of images holding each class where the model will run (None: the
        Kaggle train set's). A labelled sample richer in defects than production says little about
        the score there; this re-weighs its defect and clean pairs to those rates."""
        grid = (len(self.pairs) // len(CLASSES), len(CLASSES))
        truth_has = (self.pairs["truth"] != "").to_numpy().reshape(grid)
        return expected_score(truth_has, self.pairs["dice"].to_numpy().reshape(grid), prevalence)

    def to_dict(self, prevalence: Any = None) -> dict[str, Any]:
        """The summary as JSON-ready values: ``score``, ``all_empty``, ``images``, ``classes`` (the
        table's rows by ClassId, then ``"all"``; an undefined ratio is None), ``expected`` (the
        score expected at ``prevalence``: :meth:`expected_score`), ``failures`` and ``unmatched``."""
        table = self.report.astype(object).where(self.report.notna(), None)
        return {
            "score": self.score,
            "all_empty": self.all_empty,
            "images": len(self.pairs) // len(CLASSES),
            "classes": {str(k): {c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()}
                        for k, row in table.iterrows()},
            "expected": self.expected_score(prevalence),
            "failures": dict(self.failures),
            "unmatched": list(self.unmatched),
        }

    def save(self, path: PathLike, prevalence: Any = None) -> Path:
        """Write the result atomically: ``.json``, the summary (:meth:`to_dict`, strict JSON);
        ``.csv``, the pairs (``ImageId, ClassId, truth, pred, dice``, RLE texts as in the labels);
        ``.png``, the chart of :func:`plot_report`. ``prevalence`` is :meth:`to_dict`'s.

        Raises:
            ValueError: Another suffix.
            IsADirectoryError: ``path`` is a folder.
            NotADirectoryError: A parent of ``path`` is a file.
        """
        import json

        from steelfast._io import atomic_write_bytes

        out = check_save_path(path)
        kind = SAVE_FORMATS[out.suffix.lower()]
        if kind == "chart":
            from steelfast._io import atomic_save_png

            return atomic_save_png(plot_report(self.report), out, dpi=100)
        if kind == "summary":
            data = json.dumps(self.to_dict(prevalence), indent=2, allow_nan=False) + "\n"
        else:
            data = self.pairs[["ImageId", "ClassId", "truth", "pred", "dice"]].to_csv(index=False)
        return atomic_write_bytes(out, data.encode())


def plot_report(report: pd.DataFrame):  # -> matplotlib.figure.Figure
    """The per-class table as a chart: left, each class's score next to its all-empty score (the
    bar that matters: below all-empty, the model does worse than predicting nothing); right, Dice
    on defect pairs, false-positive rate on empty pairs, image precision and recall.

    Drawn on an Agg canvas without pyplot's global state; an undefined ratio is left out.

    Args:
        report: :func:`pair_report`'s table (rows 1..C and ``"all"``).

    Returns:
        matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    names = [f"class {k}" if k != "all" else "all" for k in report.index]
    x = np.arange(len(names))
    for offset, column, color in ((-0.2, "score", "#2a9d8f"), (0.2, "all_empty", "#b0b0b0")):
        left.bar(x + offset, report[column].astype(float), width=0.4, color=color, label=column.replace("_", "-"))
    lowest = float(np.nanmin(report[["score", "all_empty"]].to_numpy(float)))
    left.set_ylim(max(0.0, lowest - 0.05), 1.0)
    left.set_xticks(x, names)
    left.set_title("Kaggle score against predicting nothing")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, frameon=False)
    columns = (("dice_defects", "Dice on defects"), ("fp_rate_empty", "false masks on clean pairs"),
               ("precision", "image precision"), ("recall", "image recall"))
    width = 0.8 / len(columns)
    for k, (column, label) in enumerate(columns):
        right.bar(x - 0.4 + width * (k + 0.5), report[column].astype(float), width=width, label=label)
    right.set_ylim(0.0, 1.0)
    right.set_xticks(x, names)
    right.set_title("Dice and image-level rates (no bar: 0, or undefined)")
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=4, frameon=False, fontsize="small")
    return fig


def check_save_path(path: PathLike) -> Path:
    """``path`` as a Path, checked before any work: a suffix of :data:`SAVE_FORMATS`, not a folder,
    and no parent of it a file (missing folders are made when it is written).

    Raises:
        ValueError: Another suffix.
        IsADirectoryError: ``path`` is a folder.
        NotADirectoryError: A parent of ``path`` is a file.
    """
    out = Path(path)
    if out.suffix.lower() not in SAVE_FORMATS:
        raise ValueError(f"cannot tell what to write to {out}: use .json (the summary), .csv (one row per "
                         f"image and class) or .png (the chart), got suffix {out.suffix!r}")
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a folder; give a file name such as {out / 'evaluation.json'}")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise NotADirectoryError(f"cannot write {out}: {parent} is a file, not a folder")
    return out


def evaluate_folder(
    images: PathLike,
    labels: PathLike | pd.DataFrame,
    model: Any = None,
    *,
    overlays: PathLike | None = None,
    progress: bool = False,
    shape: tuple[int, int] = SHAPE,
    **options: Any,
) -> EvaluationResult:
    """Segment a labelled folder with ``model`` and score it per class.

    Every image of the folder is scored; an image without label rows counts as defect-free
    (the new Kaggle format lists defect rows only). The labels are read and checked, and the
    overlay folder made, before any image is segmented. An image of another size than ``shape``
    (the size the label runs refer to) is not scored: it is listed in the failures.

    Args:
        images: Image folder.
        labels: Label file (either Kaggle format) or DataFrame.
        model: Checkpoint, ONNX file or None for the bundled model (as in
            :class:`steelfast.inference.segmenter.Segmenter`).
        overlays: Folder for side-by-side truth/prediction PNGs (one per image), or None.
        progress: Show a progress bar.
        shape: (height, width) of the labelled images (default: Severstal's 256×1600).
        **options: Passed to :func:`steelfast.inference.pipeline.segment_folder` (``backend``, ``tta``,
            ``thresholds``, ``min_areas``, ...).

    Returns:
        An :class:`EvaluationResult`.

    Raises:
        FileNotFoundError: Missing folder, label file or model.
        steelfast.labels.LabelError: A malformed label file.
        ValueError: No image could be scored.
    """
    shape = as_shape(shape)
    truth = read_labels(labels, shape=shape)
    # Listed, not refused: a folder of clean images shares no image with defect-only (new format) labels.
    files = list_folder(images)  # listed once: the images scored are the images matched
    unmatched = sorted(set(truth["ImageId"]) - {f.name for f in files})
    if overlays is not None:
        Path(overlays).mkdir(parents=True, exist_ok=True)
    options.setdefault("image_size", shape)
    sub = segment_folder(files, model, progress=progress, **options)
    failures = dict(sub.attrs.get("failures", {}))
    ids = sorted(set(sub["ImageId"]))
    if not ids:
        first = next(iter(failures.items()), ("", ""))
        raise ValueError(f"no image of {str(images)!r} could be scored: {len(failures)} failed "
                         f"(first: {first[0]}: {first[1]})")
    grid = pd.MultiIndex.from_product([ids, list(CLASSES)], names=["ImageId", "ClassId"])
    pairs = pd.DataFrame(index=grid)
    pairs["pred"] = sub.set_index(["ImageId", "ClassId"])["EncodedPixels"].reindex(grid, fill_value="")
    truth = truth[truth["ImageId"].isin(set(ids))]
    pairs["truth"] = truth.set_index(["ImageId", "ClassId"])["EncodedPixels"].reindex(grid, fill_value="")
    pairs["dice"] = dice_rle_batch(pairs["pred"].tolist(), pairs["truth"].tolist())
    pairs = pairs.reset_index()
    grid_shape = (len(ids), len(CLASSES))
    report = pair_report(
        (pairs["truth"] != "").to_numpy().reshape(grid_shape),
        (pairs["pred"] != "").to_numpy().reshape(grid_shape),
        pairs["dice"].to_numpy().reshape(grid_shape),
    )
    if overlays is not None:
        _write_overlays(Path(images), Path(overlays), pairs, shape)
    return EvaluationResult(report, pairs, failures, unmatched)


def _write_overlays(folder: Path, out: Path, pairs: pd.DataFrame, shape: tuple[int, int]) -> None:
    stems = pd.Series([Path(str(i)).stem for i in pairs["ImageId"].unique()])
    shared = set(stems[stems.duplicated()])  # a.jpg and a.png: name both overlays by the whole file name
    for image_id, group in pairs.groupby("ImageId", sort=True):
        stem = Path(str(image_id)).stem
        name = str(image_id) if stem in shared else stem
        gray = read_gray(folder / str(image_id))
        truth = decode_batch(group["truth"].tolist(), shape=shape)
        pred = decode_batch(group["pred"].tolist(), shape=shape)
        save_overlay(out / f"{name}.png", gray, truth=truth, pred=pred)
