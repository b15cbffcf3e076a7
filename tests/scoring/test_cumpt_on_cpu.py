"""CumPT rule: hand-computed cases, hypothesis properties, calibration on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taosr1_verl.evaluation.calibration import calibrate_beta
from taosr1_verl.schema import ESCI, TAOSR1, WANDS
from taosr1_verl.scoring.cumpt import (
    argmax_levels,
    cumpt_levels,
    cumpt_tiers,
    softmax,
)


@pytest.mark.parametrize(
    ("probs", "beta", "level"),
    [
        # P4 >= beta -> 4
        ([0.50, 0.20, 0.20, 0.10], 0.5, 4),
        # P4 = .3 < .5 <= P4 + P3 = .6 -> 3
        ([0.30, 0.30, 0.30, 0.10], 0.5, 3),
        # P4 + P3 = .2 < .5 <= .2 + .6 -> 2
        ([0.10, 0.10, 0.60, 0.20], 0.5, 2),
        # cumulative .1, .2, .3 all < .9 -> 1
        ([0.10, 0.10, 0.10, 0.70], 0.9, 1),
        # the same row, permissive beta: P4 = .1 >= .05 -> 4
        ([0.10, 0.10, 0.10, 0.70], 0.05, 4),
        # argmax would say 2 here; CumPT at beta .45 says 3 (P4+P3 = .5)
        ([0.25, 0.25, 0.40, 0.10], 0.45, 3),
        # beta exactly on a cumulative value counts as reached
        ([0.25, 0.25, 0.25, 0.25], 0.75, 2),
    ],
)
def test_hand_computed_cases(probs, beta, level):
    assert cumpt_levels([probs], beta, TAOSR1).tolist() == [level]


def test_tiers_and_three_level_schema():
    assert cumpt_tiers([[0.1, 0.1, 0.7, 0.1], [0.05, 0.05, 0.1, 0.8]], 0.5, TAOSR1) == ["Mid", "Bad"]
    # WANDS: levels 3, 2, 1
    assert cumpt_levels([[0.2, 0.5, 0.3]], 0.6, WANDS).tolist() == [2]
    assert cumpt_tiers([[0.2, 0.5, 0.3]], 0.6, WANDS) == ["Mid"]


def test_unnormalised_rows_and_rounding():
    # Rows are normalised, and a sum like 0.9999999 must still reach beta = 1 at the last level.
    assert cumpt_levels([[2.0, 2.0, 0.0, 0.0]], 0.5).tolist() == [4]
    assert cumpt_levels([[0.3333333, 0.3333333, 0.3333333, 0.0]], 1.0).tolist() in ([2], [1])
    assert cumpt_levels([[0.25, 0.25, 0.25, 0.25]], 1.0).tolist() == [1]


@pytest.mark.parametrize(
    ("probs", "beta", "msg"),
    [
        ([[0.5, 0.5, 0.0]], 0.5, "shape"),
        ([[0.5, 0.5, np.nan, 0.0]], 0.5, "row 0"),
        ([[0.5, 0.5, -0.1, 0.1]], 0.5, "row 0"),
        ([[0.5, 0.5, 0.0, 0.0]], 1.5, "beta"),
        ([[0.0, 0.0, 0.0, 0.0]], 0.5, "sum to zero"),
    ],
)
def test_bad_input_is_named(probs, beta, msg):
    with pytest.raises(ValueError, match=msg):
        cumpt_levels(probs, beta, TAOSR1)


prob_rows = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=4, max_size=4).filter(lambda r: sum(r) > 1e-6)


@settings(max_examples=200, deadline=None)
@given(row=prob_rows, b1=st.floats(0.0, 1.0), b2=st.floats(0.0, 1.0))
def test_monotone_in_beta(row, b1, b2):
    lo, hi = sorted((b1, b2))
    assert cumpt_levels([row], lo)[0] >= cumpt_levels([row], hi)[0]


@settings(max_examples=200, deadline=None)
@given(row=prob_rows)
def test_extreme_betas(row):
    p = np.asarray(row) / sum(row)
    # beta -> 0: any positive P4 reaches it
    tiny = float(p[0]) / 2 if p[0] > 0 else None
    if tiny is not None and tiny > 0:
        assert cumpt_levels([row], tiny)[0] == 4
    # beta -> 1 with mass spread over the lowest level: level 1
    if p[3] > 1e-6:
        assert cumpt_levels([row], 1.0 - p[3] / 2)[0] == 1


@settings(max_examples=100, deadline=None)
@given(row=prob_rows, beta=st.floats(0.0, 1.0))
def test_matches_the_definition(row, beta):
    # k* = max{k : P(Y >= k) >= beta}, written out with a plain loop.
    p = np.asarray(row) / sum(row)
    levels = [4, 3, 2, 1]
    expected = 1
    for k in levels:
        if p[: levels.index(k) + 1].sum() >= beta:
            expected = k
            break
    assert cumpt_levels([row], beta)[0] == expected


def _synthetic(n: int, rng: np.random.Generator):
    """Labels with a model that is over-confident in level 4: CumPT must learn a beta above 0.5."""
    gold = rng.choice([4, 3, 2, 1], size=n, p=[0.5, 0.05, 0.36, 0.09])
    logits = rng.normal(0, 0.5, size=(n, 4))
    idx = {4: 0, 3: 1, 2: 2, 1: 3}
    for i, g in enumerate(gold):
        logits[i, idx[int(g)]] += 2.0
    logits[:, 0] += 1.6  # bias toward Excellent: argmax over-predicts Good
    return softmax(logits), gold


def test_calibration_on_synthetic_data_beats_argmax_and_fixed_beta():
    rng = np.random.default_rng(0)
    probs, gold = _synthetic(3000, rng)
    cal = calibrate_beta(probs, gold, TAOSR1)
    assert len(cal.sweep) == 99 and cal.metric == "tier_macro_f1"
    assert cal.score == max(s for _, s in cal.sweep)
    assert cal.beta > 0.5  # the biased model needs a stricter threshold

    from taosr1_verl.evaluation.metrics import tier_macro_f1

    held_probs, held_gold = _synthetic(3000, rng)
    calibrated = tier_macro_f1(held_gold, cumpt_levels(held_probs, cal.beta).tolist())
    plain = tier_macro_f1(held_gold, argmax_levels(held_probs).tolist())
    assert calibrated > plain + 0.01


def test_calibration_custom_metric_and_grid():
    probs = softmax(np.random.default_rng(1).normal(size=(50, 4)))
    gold = [4] * 50
    # Always predicting 4 is optimal for accuracy: the smallest beta of the grid wins (all tie? no: only
    # betas below every row's P4 give 4 everywhere).
    cal = calibrate_beta(probs, gold, TAOSR1, metric="accuracy", betas=[0.001, 0.5, 0.999])
    assert cal.beta == 0.001 and cal.score == 1.0

    def only_level_one(g, p, schema):
        return float(np.mean(np.asarray(p) == 1))

    cal = calibrate_beta(probs, gold, ESCI, metric=only_level_one, betas=[0.2, 0.9999])
    assert cal.beta == 0.9999 and cal.metric == "only_level_one"
    with pytest.raises(ValueError, match="unknown calibration metric"):
        calibrate_beta(probs, gold, metric="auc")
    with pytest.raises(ValueError, match="50 probability rows but 2 gold"):
        calibrate_beta(probs, [4, 4])
