"""steelfast.training.fit: the files of a gated run folder (the whole fit runs in test_cli_model.py)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import small_labelled_set

from steelfast.training.crossval import OutOfFold, cross_validate, stratified_folds
from steelfast.training.fit import cv_text, write_cv_files


def _cv():
    data = small_labelled_set()
    seg = np.stack([m if m is not None else np.zeros((4, 256, 1600), np.uint8) for m in data.masks]) * np.uint8(255)
    oof = OutOfFold(stratified_folds(data, 2), seg, data.presence.astype(np.float32))
    return data, cross_validate(data, oof)


def test_writes_the_summary_the_text_and_the_chart(tmp_path: Path) -> None:
    data, cv = _cv()
    write_cv_files(tmp_path, data, cv, {"synthetic": None})
    figures = json.loads((tmp_path / "cv.json").read_text())
    assert figures["score_mean"] == pytest.approx(cv.summary()["score_mean"]) and figures["synthetic"] is None
    assert (tmp_path / "report.txt").read_text() == cv_text(data, cv)
    chart = cv2.imread(str(tmp_path / "report.png"))
    assert chart is not None and chart.shape[:2] == (420, 1100) and chart.std() > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cv.json", "report.png", "report.txt"]


@pytest.mark.parametrize("failing", ["json", "png"])
def test_a_failed_write_leaves_the_files_of_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   failing: str) -> None:
    import matplotlib.figure

    import steelfast.training.fit as fit

    data, cv = _cv()
    for name in ("cv.json", "report.txt", "report.png"):
        (tmp_path / name).write_bytes(b"before")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    if failing == "json":
        monkeypatch.setattr(fit.json, "dumps", broken)
    else:
        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        write_cv_files(tmp_path, data, cv, {})
    assert (tmp_path / "report.png").read_bytes() == b"before"
    assert ((tmp_path / "cv.json").read_bytes() == b"before") == (failing == "json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cv.json", "report.png", "report.txt"]  # no temporary file


def test_text_names_the_classes_on_and_the_bar_of_the_gate_rule() -> None:
    from steelfast.training.gate_tuning import CLASS_OFF, GateChoice, break_even

    data, cv = _cv()
    text = cv_text(data, cv)
    on = " | ".join(",".join(str(c + 1) for c, g in enumerate(ch.gate) if g < CLASS_OFF) or "none" for ch in cv.choices)
    assert f"classes on, per fold: {on}\n" in text
    bars = []
    for c in range(4):  # the mean over folds of each fold's tuning bar
        details = [ch.details[c] for ch in cv.choices if "break_even" in ch.details[c]]
        values = [d["break_even"] for d in details]
        assert values == [break_even(d["prevalence"], d["negatives"]) for d in details]
        bars.append(f"{c + 1}: {np.mean(values):.2f}" + (" (never)" if np.mean(values) > 1 else "") if values else f"{c + 1}: -")
    assert "(mean over folds): " + ", ".join(bars) + "; more labelled images" in text
    # A rule that reports no bar (another choice rule) gets the classes-on line only.
    other = type(cv)(cv.folds, cv.report, cv.real_estimate,
                     [GateChoice([CLASS_OFF, 0.5, CLASS_OFF, CLASS_OFF], [0.5] * 4, [0] * 4, [0.0] * 4, [{}] * 4)] * 2)
    text = cv_text(data, other)
    assert "classes on, per fold: 2 | 2\n" in text and "the gate rule" not in text
