"""Stats of a built dataset: label mix, class CV, query kinds, prompt lengths (characters, and tokens when
a tokenizer is given). Works on RL/eval (``prompt``), SFT (``messages``) and pairs parquet files."""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pyarrow.parquet as pq

from taosr1_verl.data.builders import class_cv


def _quantiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    v = sorted(values)
    n = len(v)
    return {"min": v[0], "median": v[n // 2], "p95": v[min(n - 1, int(n * 0.95))], "max": v[-1],
            "mean": round(sum(v) / n, 1)}


def dataset_stats(path: str | os.PathLike[str], tokenizer: Any = None, batch_size: int = 2048) -> dict[str, Any]:
    """Stats of one parquet file (streamed in batches).

    ``prompt_chars`` / ``prompt_tokens`` measure the chat prompt the model reads (RL/eval: ``prompt`` with the
    generation prompt; SFT: the messages before the assistant turn), ``target_tokens`` the SFT answer.

    Example:
        >>> import tempfile, os
        >>> from taosr1_verl.data import generate_synthetic, write_eval_parquet
        >>> p = os.path.join(tempfile.mkdtemp(), "e.parquet")
        >>> _ = write_eval_parquet(generate_synthetic(100), p)
        >>> s = dataset_stats(p)
        >>> s["rows"], sum(s["label_counts"].values())
        (100, 100)
    """
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    kind = "rl" if "prompt" in names else "sft" if "messages" in names else "pairs" if "level" in names else None
    if kind is None:
        raise ValueError(f"{path}: not an RL, SFT or pairs parquet (no prompt, messages or level column)")
    levels: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    queries: set[str] = set()
    chars: list[int] = []
    toks: list[int] = []
    target_toks: list[int] = []
    rows = 0
    for batch in pf.iter_batches(batch_size=batch_size):
        recs = batch.to_pylist()
        rows += len(recs)
        texts, targets = [], []
        for r in recs:
            info = r.get("extra_info") or r
            levels[int(info["level"])] += 1
            kinds[info.get("query_kind") or ""] += 1
            queries.add(info["query"])
            if kind == "pairs":
                continue
            msgs = r["prompt"] if kind == "rl" else r["messages"][:-1]
            chars.append(sum(len(m["content"]) for m in msgs))
            if tokenizer is not None:
                texts.append(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
                if kind == "sft":
                    targets.append(r["messages"][-1]["content"])
        if texts:
            toks += [len(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        if targets:
            target_toks += [len(x) for x in tokenizer(targets, add_special_tokens=False)["input_ids"]]
    total = sum(levels.values()) or 1
    out: dict[str, Any] = {
        "path": str(path), "layout": kind, "rows": rows, "queries": len(queries),
        "label_counts": {str(k): levels[k] for k in sorted(levels, reverse=True)},
        "label_shares": {str(k): round(levels[k] / total, 4) for k in sorted(levels, reverse=True)},
        "class_cv": round(class_cv(levels), 4),
        "query_kinds": dict(kinds.most_common()) if any(kinds) else {},
    }
    if chars:
        out["prompt_chars"] = _quantiles(chars)
    if toks:
        out["prompt_tokens"] = _quantiles(toks)
    if target_toks:
        out["target_tokens"] = _quantiles(target_toks)
    return out


def format_stats(stats: dict[str, Any]) -> str:
    """A short human-readable rendering (the CLI prints it; ``json.dumps`` for machines)."""
    lines = [f"{stats['path']}: {stats['layout']} layout, {stats['rows']} rows, {stats['queries']} queries",
             "label mix: " + ", ".join(f"{k}: {v} ({stats['label_shares'][k]:.1%})"
                                      for k, v in stats["label_counts"].items()),
             f"class CV: {stats['class_cv']:.3f}"]
    if stats.get("query_kinds"):
        lines.append("query kinds: " + json.dumps(stats["query_kinds"]))
    for key in ("prompt_chars", "prompt_tokens", "target_tokens"):
        if key in stats:
            q = stats[key]
            lines.append(f"{key}: median {q['median']}, p95 {q['p95']}, max {q['max']}")
    return "\n".join(lines)
