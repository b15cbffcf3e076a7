"""Unbiased pass@k: checked against brute-force enumeration and its defining properties."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taosr1_verl.pairs.passk import mean_pass_at_k, pass_at_k, pass_at_k_curve


def _brute(n: int, c: int, k: int) -> float:
    # Fraction of all k-subsets of the n samples that contain at least one correct sample.
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@given(st.integers(1, 9).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_matches_subset_enumeration(nck: tuple[int, int, int]) -> None:
    n, c, k = nck
    assert pass_at_k(n, c, k) == pytest.approx(_brute(n, c, k), abs=1e-12)


@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_curve_properties(nc: tuple[int, int]) -> None:
    n, c = nc
    curve = pass_at_k_curve(n, c)
    assert len(curve) == n
    assert curve[0] == pytest.approx(c / n)  # pass@1 is the pass rate
    assert all(0.0 <= x <= 1.0 for x in curve)
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(curve))  # monotone in k
    assert curve[-1] == (1.0 if c else 0.0)
    assert curve[-1] == pytest.approx(1 - math.comb(n - c, n) / math.comb(n, n))


def test_large_n_is_stable() -> None:
    # The binomials overflow floats here; the product form must not.
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5)
    assert 0 < pass_at_k(5000, 3, 10) < 1


@pytest.mark.parametrize(("n", "c", "k"), [(3, 4, 1), (3, 1, 4), (3, 1, 0), (-1, 0, 1)])
def test_rejects_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_curve_and_empty() -> None:
    assert mean_pass_at_k([4, 4], [0, 4]) == [0.5, 0.5, 0.5, 0.5]
    assert mean_pass_at_k([], []) == []
    assert pass_at_k_curve(0, 0) == []
    with pytest.raises(ValueError):
        mean_pass_at_k([2], [1, 1])
