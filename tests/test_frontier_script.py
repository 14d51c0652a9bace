"""bench/goal_frontier.py: the in-sample frontier of gate and post-processing settings, against brute force."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from helpers import bench_script

from steelfast.data.real import LabelledSet
from steelfast.training.crossval import OutOfFold

T_GRID, A_GRID = (0.3, 0.6), (0, 6)


def _script():
    return bench_script("goal_frontier")


def _problem(seed: int, n: int = 7, classes: int = 2):
    rng = np.random.default_rng(seed)
    truth = np.zeros((n, classes, 6, 10), np.uint8)
    for i, c in itertools.product(range(n), range(classes)):
        if rng.random() < 0.45:
            y, x = rng.integers(0, 4), rng.integers(0, 7)
            truth[i, c, y : y + 2, x : x + 3] = 1
    seg = np.clip(rng.integers(0, 140, truth.shape) + truth * rng.integers(40, 180), 0, 255).astype(np.uint8)
    gate = np.round(rng.random((n, classes)) * 0.6 + truth.any((2, 3)) * 0.3, 1).astype(np.float32)
    return seg, gate, truth


def _brute_force(seg, gate, truth, w_defect, w_clean):
    """Every combination of per-class settings: (score, sum of defect-pair Dice), Pareto-filtered."""
    n, classes = gate.shape
    has = truth.any((2, 3))
    per_class = []
    for c in range(classes):
        options = [(w_clean[c] * (~has[:, c]).sum(), 0.0)]
        for g, t, a in itertools.product(np.unique(gate[:, c]), T_GRID, A_GRID):
            score = defect = 0.0
            for i in range(n):
                p = seg[i, c] > int(np.floor(t * 255))
                on = gate[i, c] >= g and p.sum() >= max(a, 1)
                if has[i, c]:
                    d = 2 * (p & (truth[i, c] > 0)).sum() / (p.sum() + truth[i, c].sum()) if on else 0.0
                    score, defect = score + w_defect[c] * d, defect + d
                else:
                    score += w_clean[c] * (not on)
            options.append((score, defect))
        per_class.append(options)
    totals = [tuple(map(sum, zip(*combo))) for combo in itertools.product(*per_class)]
    return sorted({(round(s, 9), round(d, 9)) for s, d in totals
                   if not any(s2 >= s and d2 >= d and (s2 > s or d2 > d) for s2, d2 in totals)}, reverse=True)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("weights", ["equal", "unequal"])
def test_frontier_is_the_brute_force_pareto_set(seed: int, weights: str) -> None:
    script = _script()
    seg, gate, truth = _problem(seed)
    w_defect, w_clean = ((0.1, 0.1), (0.1, 0.1)) if weights == "equal" else ((0.3, 0.05), (0.02, 0.2))
    per_class = [script.class_options(seg[:, c], gate[:, c], list(truth[:, c]), T_GRID, A_GRID, w_defect[c],
                                      w_clean[c]) for c in range(2)]
    got = sorted({(round(s, 9), round(d, 9)) for s, d, _ in script.frontier(per_class)}, reverse=True)
    assert got == _brute_force(seg, gate, truth, w_defect, w_clean)


@pytest.mark.parametrize(("points", "kept"), [
    ([(1, 0), (0, 1), (0.5, 0.5)], [(1, 0), (0.5, 0.5), (0, 1)]),
    ([(1, 1), (0, 1), (1, 0), (0.5, 0.5)], [(1, 1)]),
    ([(1, 0), (1, 0)], [(1, 0)]),  # a tie is kept once
])
def test_pareto(points: list, kept: list) -> None:
    assert [p[:2] for p in _script().pareto([(*p, None) for p in points])] == kept


def _set(truth: np.ndarray) -> LabelledSet:
    n = len(truth)
    return LabelledSet([f"{i}.jpg" for i in range(n)], np.zeros((n, *truth.shape[2:]), np.uint8),
                       truth.any((2, 3)), np.ones(n, bool), list(truth))


@pytest.mark.parametrize("real_rates", [False, True])
def test_run_frontier_perfect_predictions_reach_one(real_rates: bool) -> None:
    _, _, truth = _problem(0, classes=4)
    truth[0], truth[1] = 1, 0  # every class has defect and clean pairs
    data = _set(truth)
    oof = OutOfFold(np.zeros(len(truth), np.int64), truth * np.uint8(255), truth.any((2, 3)).astype(np.float32))
    front, all_empty, defect = _script().run_frontier(oof, data, real_rates)
    assert defect == int(truth.any((2, 3)).sum())
    assert front[0][:2] == pytest.approx((1.0, 1.0)) and len(front) == 1
    if real_rates:
        from steelfast.severstal import PREVALENCE

        assert all_empty == pytest.approx(np.mean([1 - p for p in PREVALENCE]))
    else:
        assert all_empty == pytest.approx(1 - truth.any((2, 3)).mean())


def test_run_frontier_ends_at_all_empty_when_nothing_helps() -> None:
    _, _, truth = _problem(1, classes=4)
    truth[0], truth[1] = 1, 0
    data = _set(truth)
    seg = np.zeros_like(truth)  # predicts nothing anywhere: every setting is all-empty
    oof = OutOfFold(np.zeros(len(truth), np.int64), seg, np.zeros(truth.shape[:2], np.float32))
    front, all_empty, _ = _script().run_frontier(oof, data, False)
    assert [p[:2] for p in front] == [pytest.approx((all_empty, 0.0))]


@pytest.mark.parametrize("real_rates", [False, True])
def test_main_prints_the_frontier_and_plots_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture, real_rates: bool) -> None:
    import sys
    import types

    import steelfast.data.real

    seg, gate, truth = _problem(2, n=9, classes=4)
    truth[0], truth[1] = 1, 0
    data = _set(truth)
    oof = OutOfFold(np.arange(len(truth)) % 2, seg, gate)
    monkeypatch.setattr(steelfast.data.real, "load_shared", lambda: data)
    fake = types.ModuleType("real_cv")
    fake.load_run = lambda out, folds, d: (oof, set(), set()) if (d is data and folds == 2) else None
    monkeypatch.setitem(sys.modules, "real_cv", fake)
    plot = tmp_path / "f.png"
    argv = ["--out", str(tmp_path), "--folds", "2", "--plot", str(plot)] + (["--real-rates"] if real_rates else [])
    assert _script().main(argv) == 0
    out = capsys.readouterr().out
    front, all_empty, defect = _script().run_frontier(oof, data, real_rates)
    assert f"{defect} defect pairs" in out and f"all-empty {all_empty:.4f}" in out
    assert f"best score {front[0][0]:.4f} (Dice {front[0][1]:.3f})" in out
    # The ungated segmenter's Dice per class over its defect pairs (NumPy oracle), with their counts.
    per = []
    for c in range(4):
        ds = [2 * ((seg[i, c] > 127) & (truth[i, c] > 0)).sum() / ((seg[i, c] > 127).sum() + (truth[i, c] > 0).sum())
              for i in range(len(truth)) if truth[i, c].any()]
        per.append(f"{np.mean(ds):.3f} ({len(ds)})" if ds else "- (0)")
    assert "per class " + " / ".join(per) in out
    reachable = any(s >= all_empty + 0.03 and d >= 0.35 for s, d, _ in front)
    assert out.rstrip().splitlines()[-2].endswith("yes" if reachable else "no")
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"


def test_break_even_is_the_rule_of_three_margin_per_fold() -> None:
    presence = np.array([[1, 0], [0, 0], [0, 1], [0, 0], [1, 0]], bool)
    fold = np.array([0, 0, 1, 1, 1])
    got = _script().break_even(presence, fold, [0.25, 0.5])
    # Fold 0 tunes on images 2-4 (negatives: 2 of class 1, 2 of class 2); fold 1 on images 0-1 (1 and 2).
    np.testing.assert_allclose(got, [[0.75 * 3 / (0.25 * 2), 0.5 * 3 / (0.5 * 2)],
                                     [0.75 * 3 / (0.25 * 1), 0.5 * 3 / (0.5 * 2)]])
    assert np.isinf(_script().break_even(np.ones((2, 1), bool), np.array([0, 1]), [0.3])).all()  # no negative
