"""steelfast.training.gate_tuning against a brute-force oracle, and its conservative default."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from steelfast.training.gate_tuning import CLASS_OFF, SLACK, apply_choice, break_even, tune_gate

T_GRID = (0.3, 0.5, 0.7)
A_GRID = (0, 5, 20)


def _problem(seed: int, n: int = 24, classes: int = 2):
    rng = np.random.default_rng(seed)
    presence = rng.random((n, classes)) < 0.4
    masks, seg = [], np.zeros((n, classes, 8, 16), np.uint8)
    for i in range(n):
        m = np.zeros((classes, 8, 16), np.uint8)
        for c in range(classes):
            if presence[i, c]:
                y, x = rng.integers(0, 6), rng.integers(0, 12)
                m[c, y : y + 3, x : x + rng.integers(2, 5)] = 1
            noise = rng.integers(0, 120, (8, 16))
            seg[i, c] = np.clip(noise + m[c] * rng.integers(60, 200), 0, 255)
        masks.append(m if rng.random() < 0.6 else None)
    gate = np.clip(presence * 0.5 + rng.random((n, classes)) * 0.6, 0, 1).astype(np.float32)
    return seg, gate, masks, presence


def _oracle_gain(seg, gate, masks, presence, c, g, t, a, pi, slack):
    full = np.array([m is not None for m in masks])
    pos, neg = presence[:, c], ~presence[:, c]
    area = np.array([(s[c] > int(np.floor(t * 255))).sum() for s in seg])
    nonempty = area >= max(a, 1)
    dice = np.zeros(len(seg))
    for i, m in enumerate(masks):
        if m is not None and pos[i] and nonempty[i]:
            p = seg[i, c] > int(np.floor(t * 255))
            dice[i] = 2 * (p & (m[c] > 0)).sum() / (p.sum() + m[c].sum())
    on = (gate[:, c] >= g) & nonempty
    known = full & pos & on  # weak positives: mean Dice of the full positives predicted at this setting
    mean_dice = dice[known].mean() if known.any() else 0.0
    credit = np.where(full, dice, mean_dice) * (pos & on)
    return pi * credit.sum() / pos.sum() - (1 - pi) * ((neg & on).sum() + slack) / neg.sum()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("slack", [0, 1])
def test_choice_is_the_oracle_maximum(seed: int, slack: int) -> None:
    seg, gate, masks, presence = _problem(seed)
    prevalence = (0.4, 0.3)
    choice = tune_gate(seg, gate, masks, presence, prevalence=prevalence, thresholds=T_GRID, min_areas=A_GRID,
                       slack=slack)
    for c in range(2):
        best = max(
            _oracle_gain(seg, gate, masks, presence, c, g, t, a, prevalence[c], slack)
            for g, t, a in itertools.product(np.unique(gate[:, c]), T_GRID, A_GRID)
        )
        if best <= 0:
            assert choice.gate[c] == CLASS_OFF
        else:
            got = _oracle_gain(seg, gate, masks, presence, c, choice.gate[c], choice.thresholds[c],
                               choice.min_areas[c], prevalence[c], slack)
            assert got == pytest.approx(best)
            # The threshold sits strictly between two observed scores (or at 0): rounding-safe.
            assert choice.gate[c] == 0.0 or choice.gate[c] not in set(gate[:, c].tolist())
            assert choice.gain[c] == pytest.approx(best + (1 - prevalence[c]) * slack / (~presence[:, c]).sum())


def test_uninformative_gate_switches_a_rare_class_off() -> None:
    seg, gate, masks, presence = _problem(1)
    rng = np.random.default_rng(0)
    gate = rng.random(gate.shape).astype(np.float32)  # no information at all
    choice = tune_gate(seg, gate, masks, presence, prevalence=(0.02, 0.02), thresholds=T_GRID, min_areas=A_GRID)
    assert choice.gate == [CLASS_OFF, CLASS_OFF]


def test_apply_choice_scores_pairs() -> None:
    seg = np.zeros((3, 1, 4, 4), np.uint8)
    seg[0, 0, :2, :2] = 255   # predicted 4 px, truth the same 4 px
    seg[1, 0, :, :] = 255     # predicted on a clean image
    seg[2, 0, 0, 0] = 255     # predicted 1 px, but the gate says no
    truth = np.zeros((3, 1, 4, 4), np.uint8)
    truth[0, 0, :2, :2] = 1
    truth[2, 0, :1, :] = 1
    from steelfast.training.gate_tuning import GateChoice

    choice = GateChoice([0.5], [0.5], [0], [0.0])
    gate = np.array([[0.9], [0.9], [0.1]], np.float32)
    predicted, dice = apply_choice(seg, gate, [truth[0], truth[1], None], choice)
    assert predicted[:, 0].tolist() == [True, True, False]
    assert dice[0, 0] == 1.0 and dice[1, 0] == 0.0 and np.isnan(dice[2, 0])


def test_shape_errors() -> None:
    seg, gate, masks, presence = _problem(0)
    with pytest.raises(ValueError, match="shapes disagree"):
        tune_gate(seg, gate[:3], masks, presence)
    with pytest.raises(ValueError, match="prevalence needs 2 values"):
        tune_gate(seg, gate, masks, presence, prevalence=(0.1,))


@pytest.mark.parametrize("t", [0.3, 0.4, 0.5, 0.6, 0.7])
def test_stored_pixel_threshold_matches_the_tuned_uint8_test(t: float) -> None:
    from steelfast.training.gate_tuning import effective_threshold

    eff = effective_threshold(t)
    p = np.linspace(0, 1, 200001)
    q = np.round(p * 255)
    np.testing.assert_array_equal(p > eff, q > np.floor(t * 255))


@pytest.mark.parametrize(("pi", "negatives", "slack", "expected"), [
    (0.25, 2, 3, 0.75 * 3 / 0.5), (0.5, 10, 1, 0.1), (0.064, 77, SLACK, 0.936 * 3 / (0.064 * 77)),
    (0.3, 0, 3, float("inf")),
])
def test_break_even_formula(pi: float, negatives: int, slack: int, expected: float) -> None:
    assert break_even(pi, negatives, slack) == pytest.approx(expected)


@pytest.mark.parametrize(("k", "on"), [(0.2, False), (0.4, True)])  # masks of Dice 2k / (1 + k): 0.33 and 0.57
def test_a_class_goes_on_exactly_above_its_break_even(k: float, on: bool) -> None:
    """Perfect gate, no false mask anywhere, every positive's mask of the same Dice d: tune_gate keeps the
    class on exactly when d (its recall times mean Dice) exceeds break_even, which its details report."""
    n_pos, n_neg, pi = 10, 40, 0.15
    truth = np.zeros((n_pos + n_neg, 1, 20, 20), np.uint8)
    truth[:n_pos, 0, :, :10] = 1  # 200 px
    seg = np.zeros_like(truth)
    seg[:n_pos, 0, :, : int(10 * k)] = 255  # a part of the truth: Dice 2k / (1 + k)
    gate = np.r_[np.full(n_pos, 0.9), np.full(n_neg, 0.1)].astype(np.float32)[:, None]
    presence = truth.any(axis=(2, 3))
    choice = tune_gate(seg, gate, list(truth), presence, prevalence=[pi])
    need = choice.details[0]["break_even"]
    assert need == pytest.approx(break_even(pi, n_neg)) == pytest.approx(0.425)  # between the two Dice values
    assert (2 * k / (1 + k) > need) == on
    assert (choice.gate[0] != CLASS_OFF) == on
