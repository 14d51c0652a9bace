"""Cross-validation by image, out-of-fold gate tuning, and fitting a gated model end to end.

Flow: :class:`~steelfast.data.real.LabelledSet` → stratified folds → one model per fold trained
on the other folds → out-of-fold probabilities (:class:`OutOfFold`) →

* :func:`cross_validate`: each fold scored with settings tuned on the *other* folds' out-of-fold
  predictions (never on the fold itself) → :class:`CVResult`;
* :func:`fit_gated`: settings tuned on all out-of-fold predictions, a final model trained on all
  images, its gate set → the model and its post-processing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from steelfast._validate import check_positive_int, check_prevalence
from steelfast.analysis.evaluate import pair_report
from steelfast.data.real import LabelledSet
from steelfast.efficientnet import GatedUNet
from steelfast.metrics import expected_score
from steelfast.severstal import PREVALENCE
from steelfast.training.gate_tuning import GateChoice, apply_choice, tune_gate
from steelfast.training.gated import GatedTrainConfig, predict_set, train_gated
from steelfast.training.mix import SynthMix
from steelfast.training.pseudo import PseudoLabels

__all__ = ["CVResult", "OutOfFold", "cross_validate", "fit_gated", "out_of_fold", "stratified_folds"]

log = logging.getLogger(__name__)


def stratified_folds(data: LabelledSet, k: int, seed: int = 0) -> np.ndarray:
    """Fold number (0..k-1) per image, stratified by (fully labelled, class-presence pattern).

    Images of each stratum are shuffled with ``seed`` and dealt round-robin, continuing the
    count from one stratum to the next, so every fold gets a share of every pattern.

    Raises:
        ValueError: ``k`` < 2 or more folds than fully labelled images.
    """
    k = check_positive_int("folds", k)
    if k < 2 or k > int(data.full.sum()):
        raise ValueError(f"folds must be between 2 and the {int(data.full.sum())} fully labelled images, got {k}")
    rng = np.random.default_rng(seed)
    keys = [(bool(f), tuple(bool(v) for v in p)) for f, p in zip(data.full, data.presence)]
    fold = np.empty(len(data), np.int64)
    counter = 0
    for key in sorted(set(keys)):
        members = np.flatnonzero([kk == key for kk in keys])
        for i in rng.permutation(members):
            fold[i] = counter % k
            counter += 1
    return fold


@dataclass
class OutOfFold:
    """Out-of-fold predictions: every image predicted by the model that did not train on it.

    Attributes:
        fold: int (N,) fold per image.
        seg: uint8 (N, C, H, W) probabilities × 255.
        gate: float32 (N, C) gate probabilities.
    """

    fold: np.ndarray
    seg: np.ndarray
    gate: np.ndarray


def out_of_fold(
    data: LabelledSet, config: GatedTrainConfig, folds: np.ndarray,
    progress: Callable[[str], None] | None = None,
    mix: SynthMix | None = None,
    pseudo: PseudoLabels | None = None,
) -> OutOfFold:
    """Train one model per fold on the other folds and predict the fold.

    With ``mix``, each fold's training set gets synthetic images made of that training set only
    (shapes from the mask table minus the fold's images), seeded by config seed and fold. With
    ``pseudo``, a teacher trained on that training set (with its synthetic images) labels the
    unlabelled images, and the fold's model trains on both.
    """
    k = int(folds.max()) + 1
    if pseudo is not None:  # every labelled image, before any training: a scored one must not join as unlabelled
        pseudo.check_disjoint(data.ids)
    seg = np.zeros((len(data), data.presence.shape[1], *data.images.shape[1:]), np.uint8)
    gate = np.zeros(data.presence.shape, np.float32)
    for f in range(k):
        train_idx, test_idx = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        say = (lambda line, f=f: progress(f"fold {f + 1}/{k}: {line}")) if progress else None
        train = data.subset(train_idx)
        if mix is not None:
            train = mix(train, [data.ids[i] for i in test_idx], seed=config.seed * 100 + f)
        if pseudo is not None:
            train = pseudo(train, config, progress=say)
        model = train_gated(train, config, progress=say)
        seg[test_idx], gate[test_idx] = predict_set(model, data.images[test_idx])
    return OutOfFold(folds, seg, gate)


@dataclass
class CVResult:
    """Cross-validation figures.

    Attributes:
        folds: Per fold, on its fully labelled images: score, all_empty, dice_defects,
            fp_rate_empty, images.
        report: :func:`~steelfast.analysis.evaluate.pair_report` over all folds' fully labelled images.
        real_estimate: Per class and overall, the score expected at the real class prevalences
            of the Kaggle train set (positives and negatives of the pooled folds re-weighted), and
            those prevalences.
        choices: The settings each fold was scored with (tuned on the other folds).
        presence: bool (N, C) class presence of the scored (fully labelled) images.
        dice: float (N, C) out-of-fold Dice of each of their (image, class) pairs.
        prevalence: The class prevalences the gate was tuned for (the Kaggle train set's unless
            ``cross_validate`` was given others).
    """

    folds: pd.DataFrame
    report: pd.DataFrame
    real_estimate: dict
    choices: list[GateChoice] = field(default_factory=list)
    presence: np.ndarray | None = None
    dice: np.ndarray | None = None
    prevalence: tuple[float, ...] | None = None

    @property
    def tuned_estimate(self) -> dict | None:
        """Like ``real_estimate``, at the prevalences the gate was tuned for (None without them)."""
        return None if self.prevalence is None else self.expected_score(self.prevalence)

    def expected_score(self, prevalence: Sequence[float] | str) -> dict:
        """The score these out-of-fold predictions would get at other class prevalences.

        Per class, the Dice of its defect pairs and of its clean pairs are averaged separately and
        weighed by the prevalence (the settings stay those tuned in :func:`cross_validate`).
        Returns ``{"per_class", "score", "all_empty", "prevalence", "missing"}``; a class without
        scored images both with and without a defect has no estimate: it is listed in ``missing``
        and ``score`` is None.

        Raises:
            ValueError: No per-pair Dice kept, or a bad ``prevalence`` value.
            TypeError: A ``prevalence`` that is not numbers.
        """
        if self.presence is None or self.dice is None:
            raise ValueError("this CVResult keeps no per-pair Dice (made by cross_validate, it would)")
        return expected_score(self.presence, self.dice, prevalence)

    def summary(self) -> dict:
        """JSON-ready figures: mean and standard deviation over folds, the pooled table. A figure
        without data (the Dice on defects of a class with no defect) is None, so the dict is strict JSON."""
        f = self.folds
        return {
            "folds": int(len(f)),
            "score_mean": float(f["score"].mean()), "score_std": float(f["score"].std(ddof=0)),
            "all_empty_mean": float(f["all_empty"].mean()),
            "margin_min": float((f["score"] - f["all_empty"]).min()),
            "dice_defects_mean": _figure(f["dice_defects"].mean()),
            "dice_defects_std": _figure(f["dice_defects"].std(ddof=0)),
            "pooled": {str(k): {c: _figure(v) for c, v in row.items()} for k, row in self.report.iterrows()},
            "real_prevalence_estimate": self.real_estimate,
            "tuned_prevalence_estimate": self.tuned_estimate or self.real_estimate,
        }


def _figure(value: float) -> float | None:
    """A float for JSON; None for a NaN (no data behind it)."""
    value = float(value)
    return None if np.isnan(value) else value


def cross_validate(
    data: LabelledSet, oof: OutOfFold, *, prevalence: Sequence[float] | str | None = None,
    tune: Callable[..., GateChoice] = tune_gate,
) -> CVResult:
    """Score each fold with settings tuned on the other folds' out-of-fold predictions.

    ``prevalence`` is the share of images holding each class where the model will run (numbers,
    or comma-separated text; None: the Kaggle train set's :data:`~steelfast.severstal.PREVALENCE`).
    The gate is tuned for the score expected at those rates (:attr:`CVResult.tuned_estimate`).
    ``tune`` is the rule that chooses the settings on the other folds, called as
    :func:`~steelfast.training.gate_tuning.tune_gate` is (``seg, gate, masks, presence,
    prevalence=...``); other rules are compared with it in ``bench/choice_rules.py``.

    Raises:
        ValueError: A ``prevalence`` of the wrong length or outside (0, 1).
        TypeError: A ``prevalence`` that is not numbers.
    """
    prevalence = check_prevalence(prevalence, oof.gate.shape[1])
    k = int(oof.fold.max()) + 1
    rows, choices = [], []
    pred_all = np.zeros((len(data), 4), bool)
    dice_all = np.full((len(data), 4), np.nan)
    for f in range(k):
        other, mine = np.flatnonzero(oof.fold != f), np.flatnonzero(oof.fold == f)
        choice = tune(oof.seg[other], oof.gate[other], [data.masks[i] for i in other], data.presence[other],
                      prevalence=prevalence)
        choices.append(choice)
        pred, dice = apply_choice(oof.seg[mine], oof.gate[mine], [data.masks[i] for i in mine], choice)
        pred_all[mine], dice_all[mine] = pred, dice
        full = data.full[mine]
        rep = pair_report(data.presence[mine][full], pred[full], dice[full])
        rows.append({"fold": f + 1, "images": int(full.sum()), **{c: float(rep.loc["all", c]) for c in
                     ("score", "all_empty", "dice_defects", "fp_rate_empty")}})
        log.info("fold %d: score %.4f (all-empty %.4f)", f + 1, rows[-1]["score"], rows[-1]["all_empty"])
    full = data.full
    report = pair_report(data.presence[full], pred_all[full], dice_all[full])
    presence, dice = data.presence[full], dice_all[full]
    return CVResult(pd.DataFrame(rows), report, expected_score(presence, dice, PREVALENCE), choices, presence, dice,
                    prevalence)


def fit_gated(
    data: LabelledSet, config: GatedTrainConfig, oof: OutOfFold,
    progress: Callable[[str], None] | None = None,
    mix: SynthMix | None = None,
    pseudo: PseudoLabels | None = None,
    prevalence: Sequence[float] | str | None = None,
) -> tuple[GatedUNet, GateChoice]:
    """Tune settings on all out-of-fold predictions, train the final model on all images
    (plus ``mix``'s synthetic images made of all of them, and ``pseudo``'s unlabelled images as
    a teacher trained on those labels them). The gate is tuned for the class ``prevalence`` where
    the model will run (see :func:`cross_validate`).

    Returns:
        The model (gate thresholds set) and the chosen settings (pixel thresholds and minimum
        areas go into the checkpoint's post-processing).

    Raises:
        ValueError, TypeError: A bad ``prevalence`` (as :func:`cross_validate`), before any training.
    """
    choice = tune_gate(oof.seg, oof.gate, data.masks, data.presence,
                       prevalence=check_prevalence(prevalence, oof.gate.shape[1]))
    train = data if mix is None else mix(data, [], seed=config.seed * 100 + int(oof.fold.max()) + 1)
    if pseudo is not None:
        train = pseudo(train, config, progress=progress)
    model = train_gated(train, config, progress=progress)
    model.set_gate_thresholds(choice.gate)
    return model, choice
