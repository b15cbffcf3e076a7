"""The demo's final report: measured metrics per stage, next to the majority baseline, with plots.

Nothing here is fixed in advance: every number is read from the stage summaries of this run, and the text
says so plainly when a stage did not improve on the one before.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from taosr1_verl.pipeline.stages import StageContext

EVAL_STAGES = (("sft", "eval_sft"), ("dpo", "eval_dpo"), ("grpo", "eval_grpo"))


def _plot_stage_f1(rows: list[tuple[str, float, float | None]], baseline: float, path: Path) -> None:
    from taosr1_verl.plots import figure

    with figure(path, figsize=(5.5, 3.2)) as (_, ax):
        names = [r[0] for r in rows]
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [r[1] for r in rows], width=0.4, label="first-token argmax")
        ax.bar([i + 0.2 for i in x], [r[2] or 0.0 for r in rows], width=0.4, label="first-token CumPT")
        ax.axhline(baseline, color="grey", linestyle="--", label=f"majority baseline {baseline:.2f}")
        ax.set_xticks(list(x), names)
        ax.set_ylim(0, 1)
        ax.set_ylabel("macro-F1 (held-out)")
        ax.set_title("TaoSR1 demo: macro-F1 after each stage")
        ax.legend(fontsize=7, loc="lower right")


def _plot_sampler(series: dict[str, list[float]], path: Path) -> bool:
    if not series:
        return False
    from taosr1_verl.plots import figure

    with figure(path, ncols=len(series), figsize=(3.2 * len(series), 2.8), squeeze=False) as (fig, axes):
        for ax, (key, values) in zip(axes[0], sorted(series.items()), strict=True):
            ax.plot(range(1, len(values) + 1), values, marker="o")
            ax.set_title(key.split("/")[-1], fontsize=8)
            ax.set_xlabel("GRPO step", fontsize=8)
        fig.suptitle("GRPO and sampler statistics per step", fontsize=9)
    return True


def majority_baseline(ctx: StageContext) -> float:
    """Macro-F1 of always answering the test split's majority label: what the report and the demo's SFT gate
    compare with."""
    from taosr1_verl.evaluation.metrics import majority_macro_f1

    data = ctx.summaries["data"]
    counts = {int(k): v for k, v in data["test_label_counts"].items()}
    return majority_macro_f1(counts, int(data["majority_level"]), "taosr1")


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def stage_report(ctx: StageContext, out: Path) -> dict[str, Any]:
    from taosr1_verl.files import atomic_write_text

    s = ctx.summaries
    baseline = majority_baseline(ctx)
    rows = []
    for model_stage, eval_stage in EVAL_STAGES:
        ev = s.get(eval_stage) or {}
        if "first_token_argmax" in ev:
            rows.append((model_stage, ev["first_token_argmax"]["macro_f1"],
                         ev.get("first_token_cumpt", {}).get("macro_f1")))
    _plot_stage_f1(rows, baseline, out / "macro_f1_per_stage.png")
    has_sampler = _plot_sampler(s.get("grpo", {}).get("metrics", {}), out / "grpo_sampler.png")
    # Copy the stage plots next to the report so the folder stands alone.
    copied = {}
    for name, src in {
        "pass_at_k.png": ctx.run_dir / "passn" / "passn" / "pass_at_k.png",
        "confusion_final.png": ctx.run_dir / "eval_grpo" / "eval" / "confusion_first_token_cumpt.png",
        "beta_sweep_final.png": ctx.run_dir / "eval_grpo" / "eval" / "beta_sweep.png",
        "confusion_generate_final.png": ctx.run_dir / "eval_grpo" / "eval_generate" / "confusion_generate.png",
    }.items():
        if src.exists():
            shutil.copyfile(src, out / name)
            copied[name] = True

    prof = s.get("data", {})
    lines = [
        "# TaoSR1 demo report",
        "",
        f"Profile `{ctx.settings['profile']['name']}`, seed {ctx.settings['seed']}, sampler "
        f"`{ctx.settings.get('sampler', 'taosr1')}`. Synthetic catalog: {prof.get('pairs')} pairs, splits "
        f"{prof.get('splits')}; RL set class-balanced (CV {_fmt(prof.get('rl_cv_before'))} -> "
        f"{_fmt(prof.get('rl_cv_after'))}). Every number below was measured in this run on the held-out "
        "test split (queries never seen in training).",
        "",
        "## Macro-F1 after each stage",
        "",
        "| stage | first-token argmax | first-token CumPT | tier macro-F1 (CumPT) | false-positive rate (CumPT) |",
        "|---|---|---|---|---|",
        f"| majority baseline | {baseline:.3f} | | | |",
    ]
    for model_stage, eval_stage in EVAL_STAGES:
        ev = s.get(eval_stage) or {}
        if not ev:
            continue
        a, c = ev.get("first_token_argmax", {}), ev.get("first_token_cumpt", {})
        lines.append(f"| {model_stage} | {_fmt(a.get('macro_f1'))} | {_fmt(c.get('macro_f1'))} | "
                     f"{_fmt(c.get('tier_macro_f1'))} | {_fmt(c.get('false_positive_rate'))} |")
    lines += ["", "![macro-F1 per stage](macro_f1_per_stage.png)", ""]
    # Honest verdicts on the RL stages.
    verdicts = []
    for (prev, prev_eval), (cur, cur_eval) in zip(EVAL_STAGES, EVAL_STAGES[1:], strict=False):
        p = (s.get(prev_eval) or {}).get("first_token_argmax", {}).get("macro_f1")
        c = (s.get(cur_eval) or {}).get("first_token_argmax", {}).get("macro_f1")
        if p is None or c is None:
            continue
        if c > p + 0.005:
            verdicts.append(f"- {cur.upper()} improved macro-F1 over {prev.upper()}: {p:.3f} -> {c:.3f}.")
        else:
            verdicts.append(f"- {cur.upper()} did **not** improve macro-F1 over {prev.upper()} in this run: "
                            f"{p:.3f} -> {c:.3f} (short CPU budget; see the profile).")
    lines += verdicts + [""]
    final = s.get("eval_grpo") or {}
    if "generate" in final:
        g = final["generate"]
        lines += [
            "## Final model: generate mode vs first-token mode",
            "",
            f"Generate mode (full post-CoT answer, parsed with the reward's parser): macro-F1 "
            f"{_fmt(g.get('macro_f1'))}, accuracy {_fmt(g.get('accuracy'))}, format-error rate "
            f"{_fmt(g.get('format_error_rate'))}.",
            f"Agreement between modes: {final.get('generate_vs_first_token_agreement')}.",
            f"Reasoning verdict vs label: {final.get('verdict')}.",
            "",
        ]
        for name in ("confusion_final.png", "confusion_generate_final.png", "beta_sweep_final.png"):
            if name in copied:
                lines.append(f"![{name}]({name})")
        lines.append("")
    passn = s.get("passn") or {}
    if passn:
        lines += ["## Pass@N sampling and DPO pairs", "",
                  f"pass@k (k = 1..N): {passn.get('pass_at_k')}", f"outcomes: {passn.get('outcomes')}",
                  f"pairs: {passn.get('pairs')}; DPO loss {_fmt((s.get('dpo') or {}).get('first_loss'))} -> "
                  f"{_fmt((s.get('dpo') or {}).get('last_loss'))}", ""]
        if "pass_at_k.png" in copied:
            lines += ["![pass@k](pass_at_k.png)", ""]
    if has_sampler:
        lines += ["## GRPO and the dynamic sampler", "", "![sampler](grpo_sampler.png)", ""]
    stages = {k: v for k, v in s.items() if isinstance(v, dict)}
    peaks = [v["peak_memory_gib"] for v in stages.values() if "peak_memory_gib" in v]
    lines += ["## Stage timings and peak memory", "",
              "Peak memory: PSS of the stage's whole process tree (trainer, Ray, vLLM workers), sampled each second.",
              "", "| stage | seconds | peak memory (GiB) |", "|---|---|---|"]
    lines += [f"| {k} | {v.get('seconds', 0):.0f} | {_fmt(v.get('peak_memory_gib'), 2)} |" for k, v in stages.items()]
    lines.append(f"| all stages | {sum(v.get('seconds', 0) for v in stages.values()):.0f} | "
                 f"{_fmt(max(peaks) if peaks else None, 2)} (max) |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "report.md", text)
    return {"report": "report/report.md", "baseline_macro_f1": baseline, "stages": [r[0] for r in rows]}
