"""Student-vs-teacher agreement metrics, the AutoFAS report (JSON + Markdown) and its PNG plots.

Metrics, computed on held-out queries, with the student's score = expected relevance ``probs @ levels``:

- ``auc_good``: ROC-AUC of the student score separating the teacher's Good tier from Mid/Bad;
  ``auc_not_bad``: separating Good/Mid from Bad (skipped when a class is absent);
- ``overlap_at_k``: per query, |teacher top-k ∩ student top-k| / k, averaged over queries with more than
  k items; ``recall_k_in_m``: share of the teacher's top-k found in the student's top-m (m = 2k): the
  pre-ranking stage's job is to pass the ranker's favourites on;
- ``ndcg_at_k`` of the student (and of the teacher, for reference) against gold levels, where known;
- ``kl``: mean KL(teacher || student) in nats.

Example:
    >>> import numpy as np
    >>> m = ranking_agreement(np.array([3., 2., 1., 0.]), np.array([3., 2., 1., 0.]), ["q"] * 4, k=2)
    >>> m["overlap_at_k"], m["recall_k_in_m"]
    (1.0, 1.0)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taosr1_verl.files import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)


def _groups(query_ids: Sequence[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, q in enumerate(query_ids):
        out.setdefault(q, []).append(i)
    return out


def _top(scores: np.ndarray, rows: list[int], k: int) -> set[int]:
    # Stable tie-break by row order so that equal scores give a deterministic top-k.
    order = sorted(rows, key=lambda r: (-scores[r], r))
    return set(order[:k])


def ranking_agreement(student: np.ndarray, teacher: np.ndarray, query_ids: Sequence[str], k: int = 3,
                      m: int | None = None) -> dict[str, float]:
    """Per-query overlap@k and recall of the teacher's top-k within the student's top-m (averaged)."""
    m = m or 2 * k
    overlaps, recalls = [], []
    for rows in _groups(query_ids).values():
        if len(rows) <= k:
            continue
        t_top = _top(teacher, rows, k)
        overlaps.append(len(t_top & _top(student, rows, k)) / k)
        recalls.append(len(t_top & _top(student, rows, m)) / k)
    nan = float("nan")
    return {"overlap_at_k": float(np.mean(overlaps)) if overlaps else nan,
            "recall_k_in_m": float(np.mean(recalls)) if recalls else nan,
            "k": k, "m": m, "n_queries": len(overlaps)}


def ndcg(scores: np.ndarray, gold: np.ndarray, query_ids: Sequence[str], k: int = 5) -> float:
    """Mean NDCG@k over queries with at least two items and some relevant gain (gain = gold - min level)."""
    from sklearn.metrics import ndcg_score

    vals = []
    for rows in _groups(query_ids).values():
        g = gold[rows]
        if len(rows) < 2 or not (g > 0).any():
            continue
        vals.append(ndcg_score(g[None, :], scores[rows][None, :], k=k))
    return float(np.mean(vals)) if vals else float("nan")


def agreement_metrics(student_probs: np.ndarray, teacher_probs: np.ndarray, level_values: Sequence[int],
                      teacher_tiers: Sequence[str], query_ids: Sequence[str], gold: Sequence[int] | None = None,
                      k: int = 3) -> dict[str, float]:
    """All metrics of the module docstring for one held-out set."""
    from sklearn.metrics import roc_auc_score

    from taosr1_verl.autofas.student import kl_divergence

    levels = np.asarray(level_values, dtype=np.float64)
    s_score, t_score = student_probs @ levels, teacher_probs @ levels
    tiers = np.asarray(teacher_tiers)
    out: dict[str, float] = {"n": float(len(s_score)), "kl": kl_divergence(student_probs, teacher_probs)}
    for name, pos in (("auc_good", tiers == "Good"), ("auc_not_bad", tiers != "Bad")):
        out[name] = float(roc_auc_score(pos, s_score)) if 0 < pos.sum() < len(pos) else float("nan")
    out.update(ranking_agreement(s_score, t_score, query_ids, k=k))
    if gold is not None:
        g = np.asarray(gold, dtype=np.float64)
        known = np.isin(g, levels)
        if known.any():
            gain = np.where(known, g - levels.min(), 0.0)
            qids = [q if kn else f"\x00unknown{i}" for i, (q, kn) in enumerate(zip(query_ids, known, strict=True))]
            out["ndcg_student"] = ndcg(s_score, gain, qids, k=5)
            out["ndcg_teacher"] = ndcg(t_score, gain, qids, k=5)
    return out


def write_report(out_dir: str | os.PathLike[str], report: Mapping[str, Any]) -> tuple[Path, Path]:
    """``report.json`` and ``report.md`` in ``out_dir`` (atomic writes)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / "report.json", out / "report.md"
    atomic_write_json(jpath, report, default=float)
    atomic_write_text(mpath, render_markdown(report))
    return jpath, mpath


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if not np.isfinite(v) else f"{v:.4g}"
    return str(v)


def render_markdown(report: Mapping[str, Any]) -> str:
    s = report["search"]
    lines = [
        "# AutoFAS pre-ranking student", "",
        f"Teacher: `{report['teacher']}`; {report['n_train']} training / {report['n_test']} held-out pairs; "
        f"latency table: {report['latency_backend']}, batch {report['batch_size']}, {report['threads']} thread(s).",
        "",
        f"- budget: {s['budget_us']:.4g} µs/item; chosen architecture: fields {s['arch']['fields']}, "
        f"operators {s['arch']['ops']}",
        f"- dropped fields: {report['dropped_fields']}",
        f"- table latency {s['table_us']:.4g} µs/item; measured (exported ONNX) "
        f"{_fmt(report['student'].get('measured_us', float('nan')))} µs/item",
    ]
    if s.get("repaired"):
        lines.append(f"- after derivation (repair to fit, or fill the budget): {s['repaired']}")
    keys = ["kl", "auc_good", "auc_not_bad", "overlap_at_k", "recall_k_in_m", "ndcg_student", "ndcg_teacher"]
    lines += ["", "| model | table µs/item | measured µs/item | " + " | ".join(keys) + " |",
              "|---|---|---|" + "---|" * len(keys)]
    rows = [("searched student", report["student"])] + [
        (f"random arch {i}", r) for i, r in enumerate(report.get("random_baselines", []))]
    for name, r in rows:
        lines.append(f"| {name} {r['arch']['fields']} {r['arch']['ops']} | {_fmt(r['table_us'])} | "
                     f"{_fmt(r.get('measured_us', float('nan')))} | "
                     + " | ".join(_fmt(r['metrics'].get(k, float('nan'))) for k in keys) + " |")
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in report.get("plots", [])), ""]
    return "\n".join(lines)


def plot_report(out_dir: str | os.PathLike[str], report: Mapping[str, Any]) -> list[str]:
    """Three PNGs: the search trajectory, the final field/operator probabilities, latency vs agreement."""
    from taosr1_verl.plots import figure

    out = Path(out_dir)
    hist = report["search"]["history"]

    with figure(out / "search_curves.png", ncols=2, figsize=(10, 3.5)) as (fig, ax):
        ep = [h["epoch"] for h in hist]
        ax[0].plot(ep, [h["train_kd"] for h in hist], label="train KD (relaxed)")
        ax[0].plot(ep, [h["val_kd_hard"] for h in hist], label="val KD (derived)")
        ax[0].set_xlabel("epoch")
        ax[0].set_ylabel("soft cross-entropy")
        ax[0].legend()
        ax[1].plot(ep, [h["expected_us"] for h in hist], label="E[latency]")
        ax[1].axhline(report["search"]["budget_us"], color="r", ls="--", label="budget")
        ax[1].set_xlabel("epoch")
        ax[1].set_ylabel("µs per item")
        ax[1].legend()

    fp = report["search"]["field_probs"]
    ops = report["search"]["op_probs"]
    with figure(out / "architecture.png", ncols=2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 2]}) as (fig, ax):
        ax[0].barh(list(fp), list(fp.values()))
        ax[0].axvline(0.5, color="r", ls="--")
        ax[0].set_xlabel("P(field kept)")
        labels = sorted({k for layer in ops for k in layer},
                        key=lambda x: (not x.isdigit(), int(x) if x.isdigit() else 0))
        mat = np.array([[layer.get(k, np.nan) for k in labels] for layer in ops])
        im = ax[1].imshow(mat, vmin=0, vmax=1, cmap="viridis")
        ax[1].set_xticks(range(len(labels)), labels)
        ax[1].set_yticks(range(len(ops)), [f"layer {i}" for i in range(len(ops))])
        ax[1].set_title("P(operator)")
        fig.colorbar(im, ax=ax[1])

    with figure(out / "latency_vs_agreement.png", figsize=(5, 3.8)) as (fig, ax):
        st = report["student"]
        ax.scatter([st["table_us"]], [st["metrics"]["auc_good"]], marker="*", s=200, label="searched student")
        rb = report.get("random_baselines", [])
        if rb:
            ax.scatter([r["table_us"] for r in rb], [r["metrics"]["auc_good"] for r in rb],
                       label="random architectures")
        ax.axvline(report["search"]["budget_us"], color="r", ls="--", label="budget")
        ax.set_xlabel("table latency, µs per item")
        ax.set_ylabel("AUC vs teacher Good tier")
        ax.legend()
    return ["search_curves.png", "architecture.png", "latency_vs_agreement.png"]
