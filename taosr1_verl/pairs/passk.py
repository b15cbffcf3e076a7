"""Unbiased pass@k (Chen et al., 2021, "Evaluating Large Language Models Trained on Code").

With ``n`` samples of which ``c`` are correct, the probability that at least one of ``k`` samples drawn
without replacement is correct is ``1 - C(n-c, k) / C(n, k)``. It is computed as a running product
``prod_{i=n-c+1}^{n} (1 - k / i)`` so it stays exact in floating point for any ``n`` (no huge binomials).
Pure numpy: no model or framework import.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check(n: int, c: int, k: int) -> None:
    if n < 0 or c < 0 or k < 1:
        raise ValueError(f"pass@k needs n >= 0, c >= 0, k >= 1; got n={n}, c={c}, k={k}")
    if c > n:
        raise ValueError(f"pass@k: {c} correct samples out of only {n}")
    if k > n:
        raise ValueError(f"pass@k: k={k} is larger than the number of samples n={n}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k for one prompt with ``c`` correct out of ``n`` samples.

    Example:
        >>> round(pass_at_k(5, 1, 1), 6)
        0.2
        >>> pass_at_k(5, 1, 5)
        1.0
        >>> round(pass_at_k(4, 2, 2), 4)  # 1 - C(2,2)/C(4,2) = 1 - 1/6
        0.8333
    """
    _check(n, c, k)
    if n - c < k:
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i)
    i = np.arange(n - c + 1, n + 1, dtype=np.float64)
    return float(1.0 - np.prod(1.0 - k / i))


def pass_at_k_curve(n: int, c: int) -> list[float]:
    """``[pass@1, ..., pass@n]`` for one prompt (empty when ``n == 0``).

    Example:
        >>> [round(x, 3) for x in pass_at_k_curve(3, 1)]
        [0.333, 0.667, 1.0]
    """
    if n == 0 and c == 0:
        return []
    _check(n, c, 1)
    return [pass_at_k(n, c, k) for k in range(1, n + 1)]


def mean_pass_at_k(ns: Sequence[int], cs: Sequence[int], max_k: int | None = None) -> list[float]:
    """Dataset pass@k for ``k = 1..max_k``: the mean over prompts of the per-prompt estimate.

    ``max_k`` defaults to the smallest ``n``; every prompt must have at least ``max_k`` samples.

    Example:
        >>> mean_pass_at_k([2, 2], [1, 0])
        [0.25, 0.5]
    """
    if len(ns) != len(cs):
        raise ValueError(f"{len(ns)} sample counts but {len(cs)} correct counts")
    if not ns:
        return []
    if max_k is None:
        max_k = min(ns)
    if max_k < 1:
        return []
    curves = np.array([[pass_at_k(n, c, k) for k in range(1, max_k + 1)] for n, c in zip(ns, cs, strict=True)])
    return [float(x) for x in curves.mean(axis=0)]
