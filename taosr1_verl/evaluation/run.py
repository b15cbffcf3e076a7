"""Evaluate a relevance model on a labelled eval parquet (verl RL layout, see ``docs/data.md``).

Two modes on the same rows:

* ``first_token``: label probabilities at the first response position (one prefill), reported as argmax
  and as CumPT at ``beta`` (given, or calibrated on these rows: then the report says it is in-sample);
* ``generate``: a full greedy response, graded with the reward's own scorer (:func:`taosr1_verl.rewards.
  score_batch`), plus how often the reasoning's ``verdict: <Name>`` contradicts the label.

and how often the modes agree.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taosr1_verl import rl_rows
from taosr1_verl.evaluation.metrics import agreement, classification_report, verdict_contradiction

logger = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("first_token", "generate")


def read_eval_rows(path: str | os.PathLike[str], limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of an eval parquet with ``prompt`` (chat messages) and ``reward_model.ground_truth``.

    Raises ``ValueError`` naming the file, row and field of the first bad row (:mod:`taosr1_verl.rl_rows`).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such eval file")
    table = pq.read_table(path)
    missing = [c for c in ("prompt", "reward_model") if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; columns are {table.column_names} "
                         "(expected the RL/eval layout of docs/data.md)")
    if limit is not None:
        table = table.slice(0, limit)
    rows = table.to_pylist()
    for i, r in enumerate(rows):
        rl_rows.prompt_messages(r, f"{path} row {i}")
        rl_rows.ground_truth(r, f"{path} row {i}")
    return rows


def evaluate(
    data: str | os.PathLike[str],
    scorer: Any,
    *,
    modes: Sequence[str] = ("first_token",),
    beta: float | None = None,
    calibration_metric: str = "tier_macro_f1",
    fmt: str = "post_cot",
    max_new_tokens: int = 256,
    limit: int | None = None,
    model_name: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Run the chosen modes over ``data`` with a :class:`~taosr1_verl.scoring.base.FirstTokenScorer`.

    Returns a JSON-able dict: ``metrics`` (per mode: ``first_token_argmax``, ``first_token_cumpt``,
    ``generate``), ``calibration``, ``agreement``, ``verdict`` and per-row ``predictions``.

    Example:
        >>> from taosr1_verl.scoring.hf import HFScorer                         # doctest: +SKIP
        >>> res = evaluate("eval.parquet", HFScorer("runs/sft"), modes=["first_token", "generate"])
        >>> res["metrics"]["first_token_cumpt"]["macro_f1"]
    """
    from taosr1_verl.evaluation.calibration import calibrate_beta
    from taosr1_verl.response import make_parser
    from taosr1_verl.rewards import score_batch
    from taosr1_verl.scoring.cumpt import argmax_levels, cumpt_levels

    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"unknown evaluation mode(s) {bad}; choose from {MODES}")
    schema = scorer.schema
    rows = read_eval_rows(data, limit)
    if not rows:
        raise ValueError(f"{data}: no rows to evaluate")
    gold = [rl_rows.gold_level(r, schema, f"{data} row {i}") for i, r in enumerate(rows)]
    ids = scorer.render([r["prompt"] for r in rows])
    groups = [((r.get("extra_info") or {}).get("query") or "") for r in rows]
    result: dict[str, Any] = {"dataset": str(data), "model": model_name, "backend": scorer.name,
                              "schema": schema.name, "n": len(rows), "metrics": {}, "agreement": {}}
    preds: dict[str, list[int | None]] = {}
    per_row: list[dict[str, Any]] = [
        {"index": rl_rows.row_index(r, f"{data} row {i}"), "gold": g} for i, (r, g) in enumerate(zip(rows, gold, strict=True))
    ]
    if "first_token" in modes:
        probs = scorer.score_ids(ids, groups=groups, progress=progress)
        # The sweep is always reported; a given beta is used as is (and scored on the same grid + itself).
        cal = calibrate_beta(probs, gold, schema, metric=calibration_metric)
        cal_dict = cal.to_dict()
        if beta is None:
            beta_used, cal_dict["source"] = cal.beta, "calibrated on this data (in-sample)"
        else:
            beta_used = float(beta)
            at = calibrate_beta(probs, gold, schema, metric=calibration_metric, betas=[beta_used])
            cal_dict.update(beta=beta_used, score=at.score, source="given",
                            best_on_this_data={"beta": cal.beta, "score": cal.score})
        result["calibration"] = cal_dict
        preds["first_token_argmax"] = argmax_levels(probs, schema).tolist()
        preds["first_token_cumpt"] = cumpt_levels(probs, beta_used, schema).tolist()
        for row, p in zip(per_row, probs.tolist(), strict=True):
            row["probs"] = [round(x, 6) for x in p]
    if "generate" in modes:
        if not hasattr(scorer, "generate"):
            raise ValueError(f"backend {scorer.name!r} cannot generate; use hf or vllm for mode 'generate'")
        texts = scorer.generate(ids, max_new_tokens=max_new_tokens, progress=progress)
        scored = score_batch(texts, gold, format=fmt, schema=schema.name)
        preds["generate"] = [s["pred"] or None for s in scored]
        parse = make_parser(schema, fmt)
        parsed = [parse(t) for t in texts]
        result["verdict"] = verdict_contradiction([p.level for p in parsed], [p.reasoning for p in parsed], schema)
        errors: dict[str, int] = {}
        for p in parsed:
            if p.error:
                errors[p.error] = errors.get(p.error, 0) + 1
        result["format_errors"] = errors
        for row, t in zip(per_row, texts, strict=True):
            row["response"] = t
    for name, p in preds.items():
        result["metrics"][name] = classification_report(gold, p, schema)
        for row, v in zip(per_row, p, strict=True):
            row[name] = v
    names = list(preds)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            result["agreement"][f"{a} vs {b}"] = agreement(preds[a], preds[b])
    result["predictions"] = per_row
    return result


def evaluate_to_dir(data: str | os.PathLike[str], scorer: Any, out_dir: str | os.PathLike[str],
                    **kwargs: Any) -> dict[str, Any]:
    """:func:`evaluate`, then the report files under ``out_dir`` (markdown, JSON, PNG, predictions.jsonl)."""
    from taosr1_verl.evaluation.report import write_report
    from taosr1_verl.files import atomic_write_bytes

    result = evaluate(data, scorer, **kwargs)
    predictions = result.pop("predictions")
    paths = write_report(result, out_dir)
    lines = "".join(json.dumps(r, default=str) + "\n" for r in predictions)
    atomic_write_bytes(Path(out_dir) / "predictions.jsonl", lines.encode())
    result["paths"] = {k: str(v) for k, v in paths.items()}
    return result

