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
