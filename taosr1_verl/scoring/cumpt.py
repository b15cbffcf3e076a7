"""Cumulative-probability tiering (CumPT): pure numpy, no model needed.

Probabilities come as an ``(n, L)`` array whose columns follow ``schema.levels`` (most relevant level
first, e.g. ``P4, P3, P2, P1`` for ``taosr1``). With one threshold ``beta``::

    k* = max{ k : P(Y >= k) >= beta }

i.e. walk the levels from the top and stop at the first whose cumulative mass reaches ``beta``; then map
the level to its tier (``Good``/``Mid``/``Bad``). A small ``beta`` is permissive (high levels), a large one
strict. :func:`taosr1_verl.evaluation.calibration.calibrate_beta` picks ``beta`` on labelled data by sweeping a
grid of the label metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from taosr1_verl.schema import LabelSchema, get_schema


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


def check_probs(probs: Any, schema: LabelSchema) -> np.ndarray:
    """``probs`` as a float64 ``(n, L)`` array with the schema's ``L`` columns, finite and non-negative (one row
    may come as a vector); ``ValueError`` naming the first bad row otherwise."""
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


def check_beta(beta: float) -> float:
    """``beta`` as a float in [0, 1]; ``ValueError`` otherwise."""
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
    p = check_probs(probs, schema)
    beta = check_beta(beta)
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
    p = check_probs(probs, schema)
    return np.asarray(schema.level_values, dtype=np.int64)[np.argmax(p, axis=1)]
