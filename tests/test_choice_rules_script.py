"""bench/choice_rules.py: the calibrated gate-choice rule, scored by the nested cross-validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, bench_script, small_labelled_set, write_fair_run

from steelfast.training.gate_tuning import CLASS_OFF, apply_choice

FOLDS = 2


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # as when run: its sibling real_cv.py is importable
    return bench_script("choice_rules")


@pytest.mark.parametrize(("slope", "intercept"), [(2.0, -0.5), (0.5, 1.0), (-1.0, 0.0)])
def test_calibrate_recovers_a_logistic_model(script, slope: float, intercept: float) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=20_000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-(slope * z + intercept)))).astype(float)
    a, b = script.calibrate(z, y, ridge=1.0)
    assert a == pytest.approx(slope, abs=0.1) and b == pytest.approx(intercept, abs=0.1)


def test_calibrate_stays_finite_when_the_scores_separate(script) -> None:
    z = np.r_[-np.ones(10), np.ones(10)]
    a, b = script.calibrate(z, np.r_[np.zeros(10), np.ones(10)], ridge=1.0)
    assert np.isfinite([a, b]).all() and a > 0
    with_less_ridge = script.calibrate(z, np.r_[np.zeros(10), np.ones(10)], ridge=0.1)[0]
    assert with_less_ridge > a  # the ridge is what bounds the slope


def _perfect(n: int = 24):
    """Fully labelled images, class c on every image i with i % 4 == c or i % 3 == 0, maps and gate true."""
    from steelfast.data.real import LabelledSet

    presence = np.zeros((n, 4), bool)
    for i in range(n):
        presence[i, i % 4] = True
        if i % 3 == 0:
            presence[i, :] = False
    masks = [np.zeros((4, 256, 1600), np.uint8) for _ in range(n)]
    for i, m in enumerate(masks):
        for c in np.flatnonzero(presence[i]):
            m[c, 40:140, 100:900] = 1
    seg = np.stack(masks) * np.uint8(255)
    gate = np.where(presence, 0.95, 0.05).astype(np.float32)
    data = LabelledSet([f"{i}.jpg" for i in range(n)], np.zeros((n, 256, 1600), np.uint8), presence,
                       np.ones(n, bool), masks)
    return data, seg, gate


@pytest.mark.parametrize(("prevalence", "on"), [((0.5, 0.5, 0.5, 0.5), True), ((0.001,) * 4, False)])
def test_tune_bayes_switches_a_class_on_only_where_it_pays(script, prevalence: tuple, on: bool) -> None:
    data, seg, gate = _perfect()
    choice = script.tune_bayes(seg, gate, data.masks, data.presence, prevalence=prevalence)
    assert [g != CLASS_OFF for g in choice.gate] == [on] * 4
    if on:  # the gate threshold separates the classes' scores, and the masks then score 1 everywhere
        assert all(0.05 < g < 0.95 for g in choice.gate)
        pred, dice = apply_choice(seg, gate, data.masks, choice)
        assert np.array_equal(pred, data.presence) and np.all(dice == 1)
        assert all(d["mean_dice"] == pytest.approx(1.0) for d in choice.details)
    else:
        assert all(d["note"] == "no positive expected gain" for d in choice.details)


def test_tune_bayes_leaves_a_class_without_negatives_off(script) -> None:
    data, seg, gate = _perfect()
    presence = data.presence.copy()
    presence[:, 2] = True
    choice = script.tune_bayes(seg, gate, data.masks, presence, prevalence=(0.5,) * 4)
    assert choice.gate[2] == CLASS_OFF and choice.details[2] == {"note": "no positives or negatives"}


@pytest.mark.parametrize("rule", ["shipped", "bayes"])
def test_main_prints_the_cv_report_of_the_rule(script, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture, rule: str) -> None:
    import steelfast.data.real
    from steelfast.severstal import PREVALENCE
    from steelfast.training.crossval import cross_validate
    from steelfast.training.fit import cv_text

    data = small_labelled_set()
    monkeypatch.setattr(steelfast.data.real, "load_shared", lambda: data)
    write_fair_run(tmp_path, data, FOLDS)
    assert script.main(["--out", str(tmp_path), "--folds", str(FOLDS), "--rule", rule]) == 0
    printed = capsys.readouterr().out
    oof = bench_script("real_cv").load_run(tmp_path, FOLDS, data)[0]
    tune = {} if rule == "shipped" else {"tune": script.tune_bayes}
    cv = cross_validate(data, oof, prevalence=PREVALENCE, **tune)
    assert printed.startswith(f"run: {tmp_path}; rule: {rule}")
    assert cv_text(data, cv) in printed
    assert printed.count("\nfold ") >= FOLDS
