"""Cumulative-probability tiering (CumPT) and its calibration: pure numpy, no model needed.

Probabilities come as an ``(n, L)`` array whose columns follow ``schema.levels`` (most relevant level
first, e.g. ``P4, P3, P2, P1`` for ``taosr1``). With one threshold ``beta``::

    k* = max{ k : P(Y >= k) >= beta }

i.e. walk the levels from the top and stop at the first whose cumulative mass reaches ``beta``; then map
the level to its tier (``Good``/``Mid``/``Bad``). A small ``beta`` is permissive (high levels), a large one
strict. :func:`calibrate_beta` picks ``beta`` on labelled data by sweeping a grid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from taosr1_verl.schema import LabelSchema, get_schema

logger = logging.getLogger(__name__)

DEFAULT_BETAS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 100))
"""The default calibration grid: 0.01, 0.02, ..., 0.99."""


def softmax(logits: Any, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64 (label logits -> label probabilities).

    Example:
        >>> softmax([0.0, 0.0]).tolist()
        [0.5, 0.5]
    """
    x = np.asarray(logits, dtype=np.float64)
    x = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def _check_probs(probs: Any, schema: LabelSchema) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] != len(schema):
        raise ValueError(
            f"probabilities must have shape (n, {len(schema)}) with columns {schema.labels} "
            f"(schema {schema.name!r}), got shape {np.shape(probs)}"
        )
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        bad = int(np.flatnonzero(~(np.isfinite(p) & (p >= 0)).all(axis=1))[0])
        raise ValueError(f"probabilities of row {bad} are not finite and non-negative: {p[bad].tolist()}")
    return p


def _check_beta(beta: float) -> float:
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"CumPT beta must be in [0, 1], got {beta}")
    return beta


def cumpt_levels(probs: Any, beta: float, schema: LabelSchema | str | None = None) -> np.ndarray:
    """CumPT level per row: the highest level ``k`` with ``P(Y >= k) >= beta``.

    Rows need not be normalised exactly (they are divided by their sum); the lowest level always
    qualifies, so rounding never leaves a row without a level.

    Example:
        >>> cumpt_levels([[0.3, 0.3, 0.3, 0.1]], beta=0.5).tolist()   # P4 = .3 < .5 <= P4 + P3 = .6
        [3]
        >>> cumpt_levels([[0.3, 0.3, 0.3, 0.1]], beta=0.25).tolist()
        [4]
    """
    schema = get_schema(schema)
    p = _check_probs(probs, schema)
    beta = _check_beta(beta)
    total = p.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError(f"probabilities of row {int(np.flatnonzero(total[:, 0] <= 0)[0])} sum to zero")
    cum = np.cumsum(p / total, axis=1)
    reached = cum >= beta
    reached[:, -1] = True  # P(Y >= lowest level) is 1; guard against rounding (e.g. 0.9999999 < 1.0)
    first = np.argmax(reached, axis=1)
    values = np.asarray(schema.level_values, dtype=np.int64)
    return values[first]


def levels_to_tiers(levels: Any, schema: LabelSchema | str | None = None) -> list[str]:
    """Tier name of each level (``4, 3 -> Good``, ``2 -> Mid``, ``1 -> Bad`` for ``taosr1``).

    Example:
        >>> levels_to_tiers([4, 3, 2, 1])
        ['Good', 'Good', 'Mid', 'Bad']
    """
    schema = get_schema(schema)
    return [schema.tier_of(int(v)) for v in np.asarray(levels).ravel()]


def cumpt_tiers(probs: Any, beta: float, schema: LabelSchema | str | None = None) -> list[str]:
    """CumPT tiers: :func:`cumpt_levels` followed by the schema's tier map.

    Example:
        >>> cumpt_tiers([[0.1, 0.1, 0.7, 0.1], [0.6, 0.2, 0.1, 0.1]], beta=0.5)
        ['Mid', 'Good']
    """
    schema = get_schema(schema)
    return levels_to_tiers(cumpt_levels(probs, beta, schema), schema)


def argmax_levels(probs: Any, schema: LabelSchema | str | None = None) -> np.ndarray:
    """The most probable level per row (the no-threshold baseline CumPT is compared with)."""
    schema = get_schema(schema)
    p = _check_probs(probs, schema)
    return np.asarray(schema.level_values, dtype=np.int64)[np.argmax(p, axis=1)]


MetricFn = Callable[[Sequence[int], Sequence[int], LabelSchema], float]


def _metric_fn(metric: str | MetricFn) -> tuple[str, MetricFn]:
    if callable(metric):
        return getattr(metric, "__name__", "custom"), metric
    from taosr1_verl.evaluation import metrics as m

    table: dict[str, MetricFn] = {
        "tier_macro_f1": m.tier_macro_f1,
        "macro_f1": m.macro_f1,
        "accuracy": m.accuracy,
    }
    if metric not in table:
        raise ValueError(f"unknown calibration metric {metric!r}; choose one of {sorted(table)} or pass a callable")
    return metric, table[metric]


@dataclass(frozen=True)
class Calibration:
    """Result of :func:`calibrate_beta`."""

    beta: float
    """The chosen threshold."""
    score: float
    """The metric at ``beta``."""
    metric: str
    """Name of the metric maximised."""
    sweep: list[tuple[float, float]] = field(default_factory=list)
    """``(beta, metric)`` for every beta of the grid, ascending beta."""

    def to_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "score": self.score, "metric": self.metric,
                "sweep": [{"beta": b, "score": s} for b, s in self.sweep]}


def calibrate_beta(
    probs: Any,
    gold_levels: Sequence[Any],
    schema: LabelSchema | str | None = None,
    metric: str | MetricFn = "tier_macro_f1",
    betas: Sequence[float] | None = None,
) -> Calibration:
    """Choose the CumPT ``beta`` that maximises ``metric`` on labelled data, reporting the whole sweep.

    Args:
        probs: ``(n, L)`` label probabilities (columns in ``schema.levels`` order).
        gold_levels: gold labels (levels, label strings or names; normalised with the schema).
        metric: ``tier_macro_f1`` (default, what online ranking consumes), ``macro_f1`` (levels),
            ``accuracy``, or a callable ``(gold_levels, pred_levels, schema) -> float``.
        betas: the grid; default 0.01 ... 0.99.

    Ties: the metric is flat over ranges of beta; among the best grid points the median one is chosen,
    the point farthest from where the decision changes on this data.

    Example:
        >>> c = calibrate_beta([[0.4, 0.1, 0.4, 0.1], [0.2, 0.1, 0.6, 0.1]], [4, 2], betas=[0.3, 0.5, 0.7])
        >>> c.beta, c.score
        (0.5, 1.0)
    """
    schema = get_schema(schema)
    p = _check_probs(probs, schema)
    gold = [schema.normalize(g) for g in gold_levels]
    if len(gold) != p.shape[0]:
        raise ValueError(f"{p.shape[0]} probability rows but {len(gold)} gold labels")
    if not gold:
        raise ValueError("calibration needs at least one labelled row")
    grid = sorted({_check_beta(b) for b in (DEFAULT_BETAS if betas is None else betas)})
    if not grid:
        raise ValueError("calibration needs at least one beta")
    name, fn = _metric_fn(metric)
    sweep = [(b, float(fn(gold, cumpt_levels(p, b, schema).tolist(), schema))) for b in grid]
    best = max(s for _, s in sweep)
    winners = [b for b, s in sweep if s == best]
    beta = winners[(len(winners) - 1) // 2]
    logger.info("CumPT calibration: beta=%.3f gives %s=%.4f (%d grid points tie)", beta, name, best, len(winners))
    return Calibration(beta=beta, score=best, metric=name, sweep=sweep)
