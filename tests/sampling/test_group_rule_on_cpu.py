"""GroupRule: TaoSR1's 0 < correct < gamma, the pass-rate band, verl's std-zero equivalent."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from taosr1_verl.sampling import KEPT, TOO_EASY, TOO_HARD, GroupRule


def test_taosr1_rule_matches_its_definition():
    rule = GroupRule.taosr1(gamma=6)
    assert rule.keep_mask(range(9), 8).tolist() == [0 < c < 6 for c in range(9)]
    assert GroupRule.taosr1().bounds(16) == (1, 15)
    with pytest.raises(ValueError, match="gamma"):
        GroupRule.taosr1(gamma=1)


def test_pass_rate_band_of_the_sibling_recipe():
    rule = GroupRule.pass_rate_band(0.01, 0.9)
    assert rule.bounds(16) == (1, 14)
    assert rule.bounds(10) == (1, 9)  # 0.9 * 10 is inclusive despite float rounding
    assert rule.classify([0, 1, 14, 15, 16], 16).tolist() == [TOO_HARD, KEPT, KEPT, TOO_EASY, TOO_EASY]


def test_from_config_and_errors():
    assert GroupRule.from_config({"low": 0.25, "high": 0.75, "metric": "score"}).bounds(8) == (2, 6)
    assert GroupRule.from_config({"gamma": None}).bounds(4) == (1, 3)
    # the recipe ships gamma: null; a band set beside it wins, an explicit gamma still does
    assert GroupRule.from_config({"gamma": None, "low": 0.0, "high": 1.0}).bounds(4) == (0, 4)
    assert GroupRule.from_config({"gamma": None, "min_correct": 2}).bounds(4)[0] == 2
    assert GroupRule.from_config({}).metric == "acc"
    with pytest.raises(ValueError, match="unknown group rule option"):
        GroupRule.from_config({"gama": 3})
    with pytest.raises(ValueError, match="correct <= n"):
        GroupRule().classify([5], 4)


@given(st.lists(st.sampled_from([0.0, 1.0]), min_size=2, max_size=32))
def test_default_rule_equals_verl_std_zero_on_binary_metrics(values):
    rule = GroupRule()
    c = rule.count_correct(values)
    assert bool(rule.keep_mask([c], [len(values)])[0]) == (float(np.std(values)) != 0.0)


@given(
    n=st.integers(2, 40),
    low=st.floats(0, 1),
    high=st.floats(0, 1),
    c=st.integers(0, 40),
)
def test_band_form_matches_rates(n, low, high, c):
    c = min(c, n)
    if low > high:
        low, high = high, low
    rule = GroupRule.pass_rate_band(low, high)
    kept = bool(rule.keep_mask([c], n)[0])
    assert kept == (low * n - 1e-9 <= c <= high * n + 1e-9)


@given(n=st.integers(1, 24), p=st.floats(0, 1), gamma=st.integers(2, 25))
def test_keep_probability_is_the_binomial_band_mass(n, p, gamma):
    rule = GroupRule.taosr1(gamma=min(gamma, n + 1)) if n >= 1 else GroupRule()
    lo, hi = rule.bounds(n)
    exact = sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(lo, hi + 1))
    assert float(rule.keep_probability(n, p)) == pytest.approx(exact, abs=1e-9)


@given(n=st.integers(1, 20), a=st.floats(0.05, 50), b=st.floats(0.05, 50))
def test_beta_binomial_keep_probability_matches_integration(n, a, b):
    rule = GroupRule()
    # Monte-Carlo-free check: integrate the binomial mass over the Beta density on a fine grid.
    x = np.linspace(1e-6, 1 - 1e-6, 20001)
    logpdf = (a - 1) * np.log(x) + (b - 1) * np.log1p(-x)
    w = np.exp(logpdf - logpdf.max())
    expected = float(np.sum(w * rule.keep_probability(n, x)) / np.sum(w))
    got = float(rule.keep_probability(n, a, b))
    if min(a, b) >= 1:  # the grid integral is accurate when the density is bounded
        assert got == pytest.approx(expected, abs=2e-3)
    assert 0.0 <= got <= 1.0


def test_untrusted_metric_values_count_as_wrong():
    assert GroupRule().count_correct([1.0, float("nan"), float("inf"), -1.0, 0.5]) == 2


def _forward_band_mass(rule: GroupRule, n: int, a, b) -> np.ndarray:
    """The original implementation (sum of the band's pmf terms): the reference for the faster tail path."""
    lo, hi = rule.bounds(n)
    a = np.maximum(np.asarray(a, dtype=np.float64), 1e-9)
    b = np.maximum(np.asarray(b, dtype=np.float64), 1e-9)
    if lo > hi:
        return np.zeros(a.shape)
    pmf = np.ones(a.shape)
    for j in range(n):
        pmf = pmf * ((b + j) / (a + b + j))
    total = pmf * (lo <= 0 <= hi)
    for k in range(min(hi, n)):
        pmf = pmf * ((n - k) / (k + 1)) * ((a + k) / (b + n - k - 1))
        if k + 1 >= lo:
            total = total + pmf
    return np.clip(total, 0.0, 1.0)


@given(
    n=st.integers(1, 40),
    lo=st.integers(0, 4),
    hi_back=st.integers(0, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_keep_probability_tail_path_equals_the_band_sum(n, lo, hi_back, seed):
    rng = np.random.default_rng(seed)
    a = rng.gamma(1.0, 5.0, 64) + rng.choice([0.0, 1e-9, 500.0], 64)
    b = rng.gamma(1.0, 5.0, 64) + rng.choice([0.0, 1e-9, 500.0], 64)
    rule = GroupRule(min_correct=lo, max_correct=-1 - hi_back if hi_back else None)
    got = rule.keep_probability(n, a, b)
    assert got.shape == a.shape
    np.testing.assert_allclose(got, _forward_band_mass(rule, n, a, b), rtol=1e-9, atol=1e-12)


def test_keep_probability_of_the_std_zero_band_has_the_closed_form():
    # Band 1..n-1 under Beta(1, 1): every count is equally likely, so 1 - 2 / (n + 1).
    for n in (2, 8, 16, 64):
        assert float(GroupRule().keep_probability(n, 1.0, 1.0)) == pytest.approx(1 - 2 / (n + 1), rel=1e-12)
