"""Classification metrics for relevance labels (scikit-learn underneath), plus the TaoSR1-specific ones.

Predictions are levels of the schema, or ``None``/``0`` for a response that could not be parsed (format
error). A format error counts as a wrong prediction for every metric (it lowers recall of the gold class)
and is never a false positive.

Macro averages run over the classes present in the gold labels or the (valid) predictions, as
scikit-learn does by default; per-class rows list every level of the schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from taosr1_verl.schema import TIERS, LabelSchema, get_schema

INVALID = 0
"""Level used for a prediction that is missing or malformed."""


def _levels(values: Sequence[Any], schema: LabelSchema, allow_invalid: bool) -> list[int]:
    out = []
    for i, v in enumerate(values):
        if v is None or (allow_invalid and isinstance(v, int | np.integer) and int(v) == INVALID):
            if not allow_invalid:
                raise ValueError(f"row {i}: gold label is missing")
            out.append(INVALID)
            continue
        try:
            out.append(schema.normalize(v))
        except ValueError as e:
            raise ValueError(f"row {i}: {e}") from None
    return out


def _present(gold: list[int], pred: list[int]) -> list[int]:
    return sorted({*gold, *(p for p in pred if p != INVALID)}, reverse=True)


def macro_f1(gold: Sequence[Any], pred: Sequence[Any], schema: LabelSchema | str | None = None) -> float:
    """Macro-F1 over levels (the paper's headline metric).

    Example:
        >>> macro_f1([4, 2, 1], [4, 2, 2])
        0.5555555555555555
    """
    from sklearn.metrics import f1_score

    schema = get_schema(schema)
    g, p = _levels(gold, schema, False), _levels(pred, schema, True)
    return float(f1_score(g, p, labels=_present(g, p), average="macro", zero_division=0))


def accuracy(gold: Sequence[Any], pred: Sequence[Any], schema: LabelSchema | str | None = None) -> float:
    """Fraction of exactly right levels (format errors count as wrong).

    Example:
        >>> accuracy([4, 2], [4, None])
        0.5
    """
    schema = get_schema(schema)
    g, p = _levels(gold, schema, False), _levels(pred, schema, True)
    return float(np.mean(np.asarray(g) == np.asarray(p))) if g else 0.0


def _tiers(levels: list[int], schema: LabelSchema) -> list[str]:
    return ["invalid" if v == INVALID else schema.tier_of(v) for v in levels]


def tier_macro_f1(gold: Sequence[Any], pred: Sequence[Any], schema: LabelSchema | str | None = None) -> float:
    """Macro-F1 over tiers (Good/Mid/Bad), what online ranking consumes.

    Example:
        >>> tier_macro_f1([4, 3, 1], [3, 4, 1])   # 4 and 3 are both Good
        1.0
    """
    from sklearn.metrics import f1_score

    schema = get_schema(schema)
    g = _tiers(_levels(gold, schema, False), schema)
    p = _tiers(_levels(pred, schema, True), schema)
    labels = [t for t in TIERS if t in set(g) | set(p)]
    return float(f1_score(g, p, labels=labels, average="macro", zero_division=0))


def false_positive_rate(gold: Sequence[Any], pred: Sequence[Any], schema: LabelSchema | str | None = None) -> float:
    """Share of gold Mid/Bad items judged Good: the harm of "discriminative hallucination".

    Example:
        >>> false_positive_rate([2, 1, 4], [4, 1, 4])
        0.5
    """
    schema = get_schema(schema)
    g = _tiers(_levels(gold, schema, False), schema)
    p = _tiers(_levels(pred, schema, True), schema)
    neg = [pt for gt, pt in zip(g, p, strict=True) if gt != "Good"]
    return float(np.mean([pt == "Good" for pt in neg])) if neg else 0.0


def classification_report(
    gold: Sequence[Any], pred: Sequence[Any], schema: LabelSchema | str | None = None
) -> dict[str, Any]:
    """All label metrics in one JSON-able dict.

    Keys: ``n``, ``macro_f1``, ``accuracy``, ``tier_macro_f1``, ``tier_accuracy``, ``false_positive_rate``,
    ``format_error_rate``, ``per_class`` (name -> precision/recall/f1/support), ``confusion``
    (``labels``: level names then ``invalid``; ``matrix``: rows gold, columns predicted), ``tier_confusion``.

    Example:
        >>> r = classification_report([4, 3, 2, 1], [4, 2, 2, None])
        >>> r["accuracy"], r["format_error_rate"], r["per_class"]["Mismatch"]["precision"]
        (0.5, 0.25, 0.5)
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    schema = get_schema(schema)
    g, p = _levels(gold, schema, False), _levels(pred, schema, True)
    n = len(g)
    if len(p) != n:
        raise ValueError(f"{n} gold labels but {len(p)} predictions")
    if n == 0:
        raise ValueError("no rows to evaluate")
    values = list(schema.level_values)
    prec, rec, f1, sup = precision_recall_fscore_support(g, p, labels=values, zero_division=0)
    per_class = {
        lv.name: {"level": lv.level, "precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                  "support": int(sup[i])}
        for i, lv in enumerate(schema.levels)
    }
    cm = confusion_matrix(g, p, labels=[*values, INVALID])
    gt, pt = _tiers(g, schema), _tiers(p, schema)
    tier_labels = [*TIERS, "invalid"]
    tcm = confusion_matrix(gt, pt, labels=tier_labels)
    return {
        "n": n,
        "macro_f1": macro_f1(g, p, schema),
        "accuracy": accuracy(g, p, schema),
        "tier_macro_f1": tier_macro_f1(g, p, schema),
        "tier_accuracy": float(np.mean(np.asarray(gt) == np.asarray(pt))),
        "false_positive_rate": false_positive_rate(g, p, schema),
        "format_error_rate": float(np.mean(np.asarray(p) == INVALID)),
        "per_class": per_class,
        "confusion": {"labels": [*(lv.name for lv in schema.levels), "invalid"], "matrix": cm[:-1].tolist()},
        "tier_confusion": {"labels": tier_labels, "matrix": tcm[:-1].tolist()},
    }


def majority_macro_f1(label_counts: Mapping[Any, int], majority: Any = None,
                      schema: LabelSchema | str | None = None) -> float:
    """Macro-F1 of always answering the majority label, on gold labels with these counts: the floor a model
    must beat. ``majority`` defaults to the most frequent label (the first of equal counts).

    Example:
        >>> round(majority_macro_f1({4: 6, 2: 3, 1: 1}), 4)
        0.25
    """
    counts = {k: int(v) for k, v in label_counts.items()}
    if not counts:
        raise ValueError("no gold labels to take a majority of")
    if majority is None:
        majority = max(counts, key=counts.get)
    gold = [k for k, v in counts.items() for _ in range(v)]
    return macro_f1(gold, [majority] * len(gold), schema)


def agreement(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Share of rows where two prediction lists agree (e.g. generate vs first-token mode).

    Example:
        >>> agreement([4, 2, None], [4, 1, None])
        0.6666666666666666
    """
    if len(a) != len(b):
        raise ValueError(f"{len(a)} vs {len(b)} predictions")
    norm = [(INVALID if x is None else int(x), INVALID if y is None else int(y)) for x, y in zip(a, b, strict=True)]
    return float(np.mean([x == y for x, y in norm])) if norm else 0.0


def _verdict_pattern(schema: LabelSchema) -> tuple[re.Pattern[str], dict[str, int]]:
    names: dict[str, int] = {}
    for lv in schema.levels:
        for alias in (lv.name, *(a for a in lv.aliases if len(a) > 1)):
            names[alias.casefold()] = lv.level
    alt = "|".join(re.escape(a) for a in sorted(names, key=len, reverse=True))
    # "verdict: Excellent", "Verdict - related", "verdict is Mismatch"; a label digit after "verdict:" too.
    pat = re.compile(rf"\bverdict\b\s*(?:is\b|[:=\-])?\s*\**\s*({alt}|\d+)\b", re.IGNORECASE)
    return pat, names


def extract_verdict(reasoning: str | None, schema: LabelSchema | str | None = None) -> int | None:
    """The level named by the LAST ``verdict: <Name>`` step of a reasoning text, or ``None`` if absent.

    Names and multi-letter aliases of the schema are recognised case-insensitively, as is the label string
    itself (``verdict: 3``). Untrusted text: never raises, linear-time regex.

    Example:
        >>> extract_verdict("category matches; colour differs. Verdict: Related.")
        3
        >>> extract_verdict("no final step here") is None
        True
    """
    if not isinstance(reasoning, str) or not reasoning:
        return None
    schema = get_schema(schema)
    pat, names = _verdict_pattern(schema)
    level = None
    for m in pat.finditer(reasoning):
        word = m.group(1).casefold()
        # A digit that is not a label string gives no verdict.
        level = names[word] if word in names else schema.level_of_label(m.group(1))
    return level


def verdict_contradiction(
    labels: Sequence[int | None], reasonings: Sequence[str | None], schema: LabelSchema | str | None = None
) -> dict[str, float | int]:
    """How often the reasoning's verdict names a different level than the response's label.

    Only well-formed responses (label not ``None``) are considered; ``coverage`` is the share of them whose
    reasoning has a recognisable verdict, ``rate`` the share of those that contradict the label.

    Example:
        >>> verdict_contradiction([4, 2, 3], ["verdict: Excellent", "verdict: Related", "no verdict"])
        {'n_parsed': 3, 'n_with_verdict': 2, 'coverage': 0.6666666666666666, 'n_contradicting': 1, 'rate': 0.5}
    """
    schema = get_schema(schema)
    n_parsed = n_verdict = n_contra = 0
    for label, reasoning in zip(labels, reasonings, strict=True):
        if label is None or label == INVALID:
            continue
        n_parsed += 1
        v = extract_verdict(reasoning, schema)
        if v is None:
            continue
        n_verdict += 1
        n_contra += int(v != label)
    return {
        "n_parsed": n_parsed,
        "n_with_verdict": n_verdict,
        "coverage": n_verdict / n_parsed if n_parsed else 0.0,
        "n_contradicting": n_contra,
        "rate": n_contra / n_verdict if n_verdict else 0.0,
    }
