"""Evaluation reports: ``report.json`` (everything), ``report.md`` (the tables) and PNG plots (confusion
matrices, CumPT beta sweep). matplotlib runs headless (Agg); every file is written atomically."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from taosr1_verl.files import atomic_write_bytes
from taosr1_verl.plots import figure

logger = logging.getLogger(__name__)


def plot_confusion(confusion: dict[str, Any], title: str, path: Path) -> None:
    """Heat map of a ``classification_report`` confusion (rows gold, columns predicted)."""
    import numpy as np

    labels, m = confusion["labels"], np.asarray(confusion["matrix"])
    with figure(path, figsize=(1.2 * len(labels) + 2, 1.1 * len(m) + 1.5)) as (_, ax):
        ax.imshow(m, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_yticks(range(len(m)), labels[: len(m)])
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(title)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, str(m[i, j]), ha="center", va="center",
                        color="white" if m[i, j] > m.max() / 2 else "black")


def plot_beta_sweep(sweep: list[dict[str, float]], metric: str, chosen: float, path: Path) -> None:
    """The calibration metric as a function of the CumPT threshold beta."""
    with figure(path, figsize=(6, 3.5)) as (_, ax):
        ax.plot([s["beta"] for s in sweep], [s["score"] for s in sweep], marker=".")
        ax.axvline(chosen, color="red", linestyle="--", label=f"beta = {chosen:.2f}")
        ax.set_xlabel("beta")
        ax.set_ylabel(metric)
        ax.set_title("CumPT calibration sweep")
        ax.legend()


def _metrics_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    keys = ["macro_f1", "accuracy", "tier_macro_f1", "false_positive_rate", "format_error_rate"]
    out = ["| mode | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in rows.items():
        out.append(f"| {name} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |")
    return out


def _per_class_table(r: dict[str, Any]) -> list[str]:
    out = ["| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    for name, c in r["per_class"].items():
        out.append(f"| {c['level']} {name} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |")
    return out


def write_report(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the PNG plots for an :func:`~taosr1_verl.evaluation.run.evaluate`
    result; returns the written paths by name.

    Example:
        >>> write_report(result, "runs/eval")["markdown"]          # doctest: +SKIP
        PosixPath('runs/eval/report.md')
    """
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    metrics: dict[str, dict[str, Any]] = result["metrics"]
    for name, r in metrics.items():
        p = out / f"confusion_{name}.png"
        plot_confusion(r["confusion"], f"{name} (n={r['n']})", p)
        paths[f"confusion_{name}"] = p
    cal = result.get("calibration")
    if cal:
        p = out / "beta_sweep.png"
        plot_beta_sweep(cal["sweep"], cal["metric"], cal["beta"], p)
        paths["beta_sweep"] = p
    md = [f"# Evaluation: {result['dataset']}", "",
          f"Model `{result['model']}`, backend `{result['backend']}`, schema `{result['schema']}`, "
          f"{result['n']} rows.", "", "## Metrics", "", *_metrics_table(metrics), ""]
    if cal:
        md += [f"CumPT beta = {cal['beta']:.3f} ({cal['source']}; {cal['metric']} = {cal['score']:.4f}), "
               "sweep in `beta_sweep.png`.", ""]
    if result.get("agreement"):
        md += ["## Agreement between modes", "", "| pair | agreement |", "|---|---|"]
        md += [f"| {k} | {v:.4f} |" for k, v in result["agreement"].items()] + [""]
    if result.get("verdict"):
        v = result["verdict"]
        md += ["## Reasoning verdict vs label (generate mode)", "",
               f"{v['n_contradicting']} of {v['n_with_verdict']} responses with a recognisable verdict contradict "
               f"their label (rate {v['rate']:.4f}; coverage {v['coverage']:.4f} of {v['n_parsed']} well-formed).", ""]
    for name, r in metrics.items():
        md += [f"## Per class: {name}", "", *_per_class_table(r), "", f"![confusion](confusion_{name}.png)", ""]
    paths["markdown"] = out / "report.md"
    atomic_write_bytes(paths["markdown"], "\n".join(md).encode())
    paths["json"] = out / "report.json"
    atomic_write_bytes(paths["json"], json.dumps(result, indent=1, default=str).encode())
    logger.info("report written to %s", out)
    return paths
