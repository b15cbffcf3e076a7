"""Which GRPO groups to keep: a band on the number (or rate) of correct rollouts, or verl's std-zero rule.

TaoSR1 keeps a prompt's group of ``G`` rollouts only when ``0 < correct < gamma`` (``gamma <= G``); a sibling
recipe keeps groups whose pass rate lies in ``[0.01, 0.9]``. verl's built-in filter evicts groups whose raw
metric values are all equal (``len(values) > 1 and std == 0``), which for a 0/1 metric is the band
``1 <= correct <= G - 1``. All are one :class:`GroupRule`::

    GroupRule.taosr1(gamma=6)          # 0 < correct < 6
    GroupRule.pass_rate_band(0.01, 0.9) # 0.01 <= correct / G <= 0.9
    GroupRule()                         # 1 <= correct <= G - 1 (verl's std-zero rule on a 0/1 metric)
    GroupRule.std_zero()                # verl's rule on the raw values (continuous rewards, partial credit)

A rollout is correct when its metric is ``>= threshold``; the band rules read values only through that
test, the std-zero rule reads the raw values (the threshold then only names an evicted group too easy or
too hard, and gives the tracker its counts). A group of fewer than two rollouts is always kept, as verl
keeps it: there is nothing within the group to compare, and verl's GRPO advantage of a lone rollout is its
score against a zero mean.

Pure numpy: used by the verl replay buffer, the selection policy (probability that a prompt's next group
is kept) and the benchmark alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KEPT, TOO_HARD, TOO_EASY = 0, 1, 2
REASONS: tuple[str, ...] = ("kept", "too_hard", "too_easy")
"""Outcome names by code: ``too_hard`` = fewer correct rollouts than the band allows (e.g. all wrong),
``too_easy`` = more than it allows (e.g. all correct). Under the std-zero rule an evicted group is too easy
when its shared value is ``>= threshold``, else too hard."""
KINDS: tuple[str, ...] = ("band", "std_zero")
"""``band``: keep when the correct count lies in the band; ``std_zero``: verl's rule on the raw values."""
# Integers of this size are summed exactly in float64, so np.std of equal ones is exactly 0.
_EXACT_INT = 2.0**40


@dataclass(frozen=True)
class GroupRule:
    """Keep a group of ``n`` rollouts with ``c`` correct ones when ``c`` lies in a closed band.

    The band for a group of size ``n`` is the intersection of the count bounds and the rate bounds that are
    set: ``min_correct <= c <= max_correct`` and ``min_rate * n <= c <= max_rate * n``.

    Example:
        >>> rule = GroupRule.taosr1(gamma=8)
        >>> rule.keep_mask([0, 3, 7, 8], 8).tolist()
        [False, True, True, False]
        >>> GroupRule.pass_rate_band(0.01, 0.9).bounds(16)
        (1, 14)
    """

    min_correct: int | None = 1
    """Fewest correct rollouts a kept group has (``None``: no count floor)."""
    max_correct: int | None = -1
    """Most correct rollouts a kept group has; a negative value counts from the group size (``-1`` = ``n-1``);
    ``None``: no count ceiling."""
    min_rate: float | None = None
    """Lowest pass rate ``c / n`` a kept group has (``None``: no rate floor)."""
    max_rate: float | None = None
    """Highest pass rate a kept group has (``None``: no rate ceiling)."""
    metric: str = "acc"
    """Per-rollout value read from the reward's dict (``acc`` is 0/1 in the TaoSR1 reward)."""
    threshold: float = 0.5
    """A rollout counts as correct when its metric is ``>= threshold`` (non-finite values never do)."""
    kind: str = "band"
    """``band`` (the bounds above) or ``std_zero`` (verl's rule on the raw values; the bounds must stay at
    their defaults, which are the keep band the selection policy scores under a 0/1 reading)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"GroupRule.kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "std_zero" and (self.min_correct, self.max_correct, self.min_rate, self.max_rate) != (
            1, -1, None, None
        ):
            raise ValueError("GroupRule: the std_zero rule keeps every non-constant group; it takes no band "
                             "(gamma, low/high, min_/max_correct, min_/max_rate)")
        if not math.isfinite(self.threshold):
            raise ValueError(f"GroupRule.threshold must be finite, got {self.threshold}")
        for name in ("min_rate", "max_rate"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"GroupRule.{name} must be in [0, 1], got {v}")
        if self.min_rate is not None and self.max_rate is not None and self.min_rate > self.max_rate:
            raise ValueError(f"GroupRule: min_rate {self.min_rate} > max_rate {self.max_rate}")
        if self.min_correct is not None and self.min_correct < 0:
            raise ValueError(f"GroupRule.min_correct must be >= 0, got {self.min_correct}")
        if not self.metric:
            raise ValueError("GroupRule.metric must name a reward key, e.g. 'acc'")

    # ---- constructors --------------------------------------------------------------------------
    @classmethod
    def taosr1(cls, gamma: int | None = None, metric: str = "acc") -> GroupRule:
        """TaoSR1's rule ``0 < correct < gamma``; ``gamma=None`` means ``gamma = G`` (drop all-correct)."""
        if gamma is not None and gamma < 2:
            raise ValueError(f"TaoSR1 gamma must be >= 2 (0 < correct < gamma keeps nothing otherwise), got {gamma}")
        return cls(min_correct=1, max_correct=-1 if gamma is None else gamma - 1, metric=metric)

    @classmethod
    def pass_rate_band(cls, low: float, high: float, metric: str = "acc") -> GroupRule:
        """Keep groups with ``low <= correct / G <= high``; ``low > 0`` drops all-wrong groups."""
        return cls(min_correct=None, max_correct=None, min_rate=low, max_rate=high, metric=metric)

    @classmethod
    def std_zero(cls, metric: str = "acc", threshold: float = 0.5) -> GroupRule:
        """verl's ``algorithm.filter_groups`` rule: evict a group of two or more rollouts whose metric values
        are all equal (``float(np.std(values)) == 0.0``), whatever the values are."""
        return cls(metric=metric, threshold=threshold, kind="std_zero")

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> GroupRule:
        """Build from a plain mapping (a recipe's ``sampler_kwargs``): ``rule`` (``band``, the default, or
        ``std_zero``); for the band, keys ``gamma`` (TaoSR1 form), or ``low``/``high`` (pass-rate band), or
        the field names; plus ``metric``/``threshold``.

        Example:
            >>> GroupRule.from_config({"gamma": 6}).bounds(8)
            (1, 5)
            >>> GroupRule.from_config({"rule": "std_zero", "metric": "reward", "gamma": None}).kind
            'std_zero'
        """
        cfg = dict(cfg or {})
        metric = cfg.pop("metric", "acc")
        threshold = float(cfg.pop("threshold", 0.5))
        kind = cfg.pop("rule", None) or "band"
        # `gamma: null` (the recipe's default) gives way to an explicit band, bounds or rule.
        others = {"low", "high", "min_correct", "max_correct", "min_rate", "max_rate"} & set(cfg)
        if "gamma" in cfg and cfg["gamma"] is None and (others or kind != "band"):
            cfg.pop("gamma")
        if kind == "std_zero":
            if cfg:
                raise ValueError(f"rule: std_zero evicts constant groups and takes no band; remove {sorted(cfg)} "
                                 "or use rule: band")
            return cls.std_zero(metric, threshold)
        if kind != "band":
            raise ValueError(f"unknown group rule {kind!r}; use rule: band (the default) or rule: std_zero")
        if "gamma" in cfg:
            gamma = cfg.pop("gamma")
            rule = cls.taosr1(None if gamma is None else int(gamma), metric=metric)
        elif "low" in cfg or "high" in cfg:
            rule = cls.pass_rate_band(float(cfg.pop("low", 0.0)), float(cfg.pop("high", 1.0)), metric=metric)
        else:
            fields = {k: cfg.pop(k) for k in ("min_correct", "max_correct", "min_rate", "max_rate") if k in cfg}
            rule = cls(**fields, metric=metric)
        if cfg:
            raise ValueError(f"unknown group rule option(s) {sorted(cfg)}; use gamma, or low/high, or "
                             "min_correct/max_correct/min_rate/max_rate, plus rule/metric/threshold")
        return GroupRule(rule.min_correct, rule.max_correct, rule.min_rate, rule.max_rate, metric, threshold)

    # ---- the rule ------------------------------------------------------------------------------
    def bounds(self, n: int) -> tuple[int, int]:
        """Inclusive ``(lo, hi)`` band of correct counts kept for a group of ``n`` (``lo > hi``: keeps none).
        A group of fewer than two rollouts keeps every count (verl never filters it)."""
        lo, hi = 0, n
        if n < 2:
            return lo, hi
        if self.min_correct is not None:
            lo = max(lo, self.min_correct)
        if self.max_correct is not None:
            hi = min(hi, self.max_correct if self.max_correct >= 0 else n + self.max_correct)
        # The tiny epsilon makes 0.9 * 10 == 9 inclusive despite float rounding.
        if self.min_rate is not None:
            lo = max(lo, math.ceil(self.min_rate * n - 1e-9))
        if self.max_rate is not None:
            hi = min(hi, math.floor(self.max_rate * n + 1e-9))
        return lo, hi

    def _bounds_arrays(self, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        uniq = np.unique(n)
        if uniq.size == 1:
            lo, hi = self.bounds(int(uniq[0]))
            return np.full(n.shape, lo), np.full(n.shape, hi)
        table = {int(u): self.bounds(int(u)) for u in uniq}
        lo = np.array([table[int(v)][0] for v in n.ravel()]).reshape(n.shape)
        hi = np.array([table[int(v)][1] for v in n.ravel()]).reshape(n.shape)
        return lo, hi

    def classify(self, correct: Any, n: Any) -> np.ndarray:
        """Outcome codes (:data:`KEPT`, :data:`TOO_HARD`, :data:`TOO_EASY`) per group, vectorised.

        Example:
            >>> GroupRule().classify([0, 4, 8], 8).tolist()
            [1, 0, 2]
        """
        c = np.asarray(correct, dtype=np.int64)
        n_arr = np.asarray(n, dtype=np.int64)
        if n_arr.ndim == 0:
            # One group size (the usual call): scalar bounds, no per-group unique/lookup.
            if n_arr < 1 or (c.size and (c.min() < 0 or c.max() > n_arr)):
                raise ValueError("GroupRule.classify: need 0 <= correct <= n and n >= 1 for every group")
            lo, hi = self.bounds(int(n_arr))
        else:
            nn = np.broadcast_to(n_arr, c.shape)
            if np.any(nn < 1) or np.any(c < 0) or np.any(c > nn):
                raise ValueError("GroupRule.classify: need 0 <= correct <= n and n >= 1 for every group")
            lo, hi = self._bounds_arrays(nn)
        out = np.full(c.shape, KEPT, dtype=np.int8)
        out[c < lo] = TOO_HARD
        out[(c > hi) & (c >= lo)] = TOO_EASY
        return out

    def keep_mask(self, correct: Any, n: Any) -> np.ndarray:
        """Boolean keep decision per group."""
        return self.classify(correct, n) == KEPT

    def count_correct(self, values: Sequence[float] | np.ndarray) -> int:
        """Number of rollouts of one group whose metric counts as correct (non-finite values do not)."""
        v = np.asarray(values, dtype=np.float64)
        return int(np.sum(np.isfinite(v) & (v >= self.threshold)))

    def classify_values(self, values: Any, sizes: Any) -> GroupOutcomes:
        """Classify groups from their rollouts' raw metric values, under this rule's kind.

        ``values`` holds every group's values one group after another, ``sizes`` the rollouts per group
        (each >= 1). Vectorised over groups.

        Example:
            >>> out = GroupRule.std_zero(metric="score").classify_values([0.6, 0.9, -1.0, -1.0, 0.3], [2, 2, 1])
            >>> out.codes.tolist(), out.filtered_values()
            ([0, 1, 0], [None, -1.0, None])
            >>> GroupRule().classify_values([0.6, 0.9], [2]).codes.tolist()  # both >= 0.5: all correct
            [2]
        """
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        n = np.asarray(sizes, dtype=np.int64).reshape(-1)
        if n.size and n.min() < 1 or int(n.sum()) != v.size:
            raise ValueError(f"GroupRule.classify_values: {v.size} values for group sizes summing to {int(n.sum())} "
                             "(every group needs >= 1 value)")
        if n.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return GroupOutcomes(self, empty.astype(np.int8), empty, empty, empty.astype(bool), empty.astype(float))
        starts = np.zeros(n.size, dtype=np.int64)
        np.cumsum(n[:-1], out=starts[1:])
        correct = np.add.reduceat((np.isfinite(v) & (v >= self.threshold)).astype(np.int64), starts)
        first = v[starts]
        constant = (n > 1) & (np.maximum.reduceat(v, starts) == np.minimum.reduceat(v, starts))
        # verl's test is float(np.std(values)) == 0.0. Equal values whose sum float64 rounds (3 x 0.1) give a
        # tiny nonzero std there, and equal infinities a NaN: verl keeps those groups, so recompute its test
        # wherever the sum is not exact. Moderate integers (0/1 accuracy, -1 penalties) sum exactly.
        inexact = np.flatnonzero(constant & ~((first == np.round(first)) & (np.abs(first) < _EXACT_INT)))
        for i in inexact:
            constant[i] = float(np.std(v[starts[i] : starts[i] + n[i]])) == 0.0
        if self.kind == "std_zero":
            codes = np.where(constant, np.where(first >= self.threshold, TOO_EASY, TOO_HARD), KEPT).astype(np.int8)
        else:
            codes = self.classify(correct, n[0] if np.all(n == n[0]) else n)
        return GroupOutcomes(self, codes, correct, n, constant, first)

    def keep_probability(self, n: int, a: Any, b: Any | None = None) -> np.ndarray:
        """Probability that a new group of ``n`` rollouts is kept.

        With ``b=None``, ``a`` is the per-rollout success probability (binomial). Otherwise ``(a, b)`` are the
        parameters of a Beta belief about that probability, and the result is the beta-binomial mass of the
        band, which accounts for how uncertain the estimate is. Vectorised over ``a``/``b``; cost ``O(n)``
        vector operations.

        Example:
            >>> float(GroupRule().keep_probability(8, 0.5))  # 1 - 2 / 256
            0.9921875
            >>> round(float(GroupRule().keep_probability(8, 1.0, 1.0)), 4)  # uniform belief: 1 - 2 / 9
            0.7778
        """
        lo, hi = self.bounds(n)
        a = np.asarray(a, dtype=np.float64)
        if lo > hi:
            return np.zeros(np.broadcast_shapes(a.shape, np.shape(b) if b is not None else ()))
        if b is None:
            p = np.clip(a, 0.0, 1.0)
            q = 1.0 - p
            total = np.zeros(p.shape)
            for k in range(max(lo, 0), min(hi, n) + 1):
                total = total + math.comb(n, k) * p**k * q ** (n - k)  # numpy: 0.0 ** 0 == 1.0
            return np.clip(total, 0.0, 1.0)
        b = np.asarray(b, dtype=np.float64)
        a, b = np.broadcast_arrays(np.maximum(a, 1e-9), np.maximum(b, 1e-9))
        lo, hi = max(lo, 0), min(hi, n)
        if lo + (n - hi) < hi - lo + 1:
            # The band holds most outcomes (verl's 1..G-1): 1 - the two tails costs fewer vector operations.
            return np.clip(1.0 - _beta_binomial_tails(n, a, b, lo, hi), 0.0, 1.0)
        # pmf(0) = prod_j (b + j) / (a + b + j); pmf(k+1) = pmf(k) * (n-k)/(k+1) * (a+k)/(b+n-k-1).
        pmf = np.ones(a.shape)
        for j in range(n):
            pmf = pmf * ((b + j) / (a + b + j))
        total = pmf * (lo <= 0 <= hi)
        for k in range(hi):
            pmf = pmf * ((n - k) / (k + 1)) * ((a + k) / (b + n - k - 1))
            if k + 1 >= lo:
                total = total + pmf
        return np.clip(total, 0.0, 1.0)


@dataclass(frozen=True)
class GroupOutcomes:
    """What :meth:`GroupRule.classify_values` decided, one entry per group."""

    rule: GroupRule
    codes: np.ndarray
    """Outcome codes (:data:`KEPT`, :data:`TOO_HARD`, :data:`TOO_EASY`)."""
    correct: np.ndarray
    """Rollouts whose value is ``>= threshold``."""
    sizes: np.ndarray
    """Rollouts per group."""
    constant: np.ndarray
    """verl's test: more than one rollout and ``np.std(values) == 0``."""
    first: np.ndarray
    """The group's first value (the shared value of a constant group)."""

    def filtered_values(self) -> list[float | None]:
        """Per group, ``None`` when kept; else what verl's ``_dapo_filtered_reward_counts`` diagnostic reports:
        the shared value of a constant group, and for a band that evicts a non-constant group (``gamma < G``,
        a pass-rate band, non-binary values) its pass rate."""
        rate = self.correct / self.sizes
        value = np.where(self.constant, self.first, rate)
        return [None if c == KEPT else float(x) for c, x in zip(self.codes.tolist(), value.tolist(), strict=True)]


def _beta_binomial_tails(n: int, a: np.ndarray, b: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Beta-binomial mass of ``k < lo`` plus ``k > hi`` (``0 <= lo``, ``hi <= n``), with in-place operations:
    the policy scores tens of thousands of candidates a step, where allocation is a large part of the cost."""
    s = a + b
    den = np.empty_like(s)
    tmp = np.empty_like(s)
    p0 = np.ones_like(s)  # pmf(0) = prod_j (b + j) / (a + b + j)
    pn = np.ones_like(s)  # pmf(n) = prod_j (a + j) / (a + b + j)
    for j in range(n):
        np.add(s, j, out=den)
        np.add(b, j, out=tmp)
        tmp /= den
        p0 *= tmp
        np.add(a, j, out=tmp)
        tmp /= den
        pn *= tmp
    total = np.zeros_like(s)
    pmf = p0
    for k in range(lo):  # pmf(k), forward: pmf(k+1) = pmf(k) * (n-k)/(k+1) * (a+k)/(b+n-k-1)
        total += pmf
        if k + 1 < lo:
            pmf = pmf * ((n - k) / (k + 1)) * ((a + k) / (b + n - k - 1))
    pmf = pn
    for k in range(n, hi, -1):  # pmf(k), backward: pmf(k-1) = pmf(k) * k/(n-k+1) * (b+n-k)/(a+k-1)
        total += pmf
        if k - 1 > hi:
            pmf = pmf * (k / (n - k + 1)) * ((b + n - k) / (a + k - 1))
    return total
