"""Choosing the CumPT threshold ``beta`` on labelled data: a sweep of a label metric over a grid of betas.

CumPT itself (:mod:`taosr1_verl.scoring.cumpt`) is pure numpy; the metrics it is calibrated on are the
evaluation's (:mod:`taosr1_verl.evaluation.metrics`, scikit-learn underneath), so calibration lives here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from taosr1_verl.evaluation import metrics
from taosr1_verl.schema import LabelSchema, get_schema
from taosr1_verl.scoring.cumpt import check_beta, check_probs, cumpt_levels

logger = logging.getLogger(__name__)

MetricFn = Callable[[Sequence[int], Sequence[int], LabelSchema], float]

CALIBRATION_METRICS: dict[str, MetricFn] = {
    "tier_macro_f1": metrics.tier_macro_f1,
    "macro_f1": metrics.macro_f1,
    "accuracy": metrics.accuracy,
}
"""What a calibration can maximise, by name (``taosr1 eval --metric``); the first is the default."""

DEFAULT_BETAS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 100))
"""The default calibration grid: 0.01, 0.02, ..., 0.99."""


def _metric_fn(metric: str | MetricFn) -> tuple[str, MetricFn]:
    if callable(metric):
        return getattr(metric, "__name__", "custom"), metric
    if metric not in CALIBRATION_METRICS:
        raise ValueError(f"unknown calibration metric {metric!r}; choose one of {sorted(CALIBRATION_METRICS)} "
                         "or pass a callable")
    return metric, CALIBRATION_METRICS[metric]


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
    p = check_probs(probs, schema)
    gold = [schema.normalize(g) for g in gold_levels]
    if len(gold) != p.shape[0]:
        raise ValueError(f"{p.shape[0]} probability rows but {len(gold)} gold labels")
    if not gold:
        raise ValueError("calibration needs at least one labelled row")
    grid = sorted({check_beta(b) for b in (DEFAULT_BETAS if betas is None else betas)})
    if not grid:
        raise ValueError("calibration needs at least one beta")
    name, fn = _metric_fn(metric)
    sweep = [(b, float(fn(gold, cumpt_levels(p, b, schema).tolist(), schema))) for b in grid]
    best = max(s for _, s in sweep)
    winners = [b for b, s in sweep if s == best]
    beta = winners[(len(winners) - 1) // 2]
    logger.info("CumPT calibration: beta=%.3f gives %s=%.4f (%d grid points tie)", beta, name, best, len(winners))
    return Calibration(beta=beta, score=best, metric=name, sweep=sweep)
