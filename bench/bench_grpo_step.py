"""GRPO step time on CPU split into rollout, reward, sampler and update, with the plugin's own share.

Two measurements in one run:

1. a real GRPO run (verl ``main_ppo`` V1, vLLM-CPU rollouts, the TaoSR1 reward) on the offline tiny Qwen2,
   through our recipe, CPU overlay and runner; verl's own per-stage timers (``timing_s/*``) are read from
   its step log (median over the steps after the first, which carries the warm-up);
2. the plugin's own work for one step's worth of rollouts, timed in this process with one thread:
   the reward (``taosr1_verl.rewards.compute_score`` per rollout, what verl's reward workers call) and the
   sampler (group rule + difficulty tracker update + next selection for the step's prompts).

The table gives medians and each part's share of the median step time. Target: reward + sampler < 1%.

    flock /tmp/taosr1-heavy.lock .venv/bin/python bench/bench_grpo_step.py --steps 4
    .venv/bin/python bench/bench_grpo_step.py --from-log runs/grpo.log   # reuse a run's log (same sizes)
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Pin threads before numpy/torch load (stated in the table).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

STAGES = {
    "rollout (gen)": ("gen",),
    "reward (verl stage)": ("reward",),
    "old/ref log-prob": ("old_log_prob", "ref"),
    "advantage": ("adv",),
    "update actor": ("update_actor",),
    "weight sync": ("update_weights",),
}


def parse_timings(log: str) -> list[dict[str, float]]:
    """verl's ``timing_s/<name>:<seconds>`` fields of each ``step:N`` line."""
    steps = []
    for line in log.splitlines():
        if not re.search(r"(?:^|\s)step:\d+ ", line):
            continue
        t = {m.group(1): float(m.group(2)) for m in re.finditer(r"timing_s/([\w/]+):([0-9.eE+-]+)", line)}
        if "step" in t:
            steps.append(t)
    return steps


def make_inputs(tmp: Path, n_rows: int = 32):
    """Tiny model + RL parquet, as the CPU trainer tests build them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from taosr1_verl.models.tiny import build_tiny_qwen2
    from taosr1_verl.prompts import PromptConfig, build_messages
    from taosr1_verl.response import format_response
    from taosr1_verl.schema import TAOSR1

    queries = [f"{c} {k} table" for c in ("red", "blue", "oak", "cheap") for k in ("dining", "coffee", "side", "desk")]
    rows, corpus = [], []
    for i in range(n_rows):
        q, lv = queries[i % len(queries)], TAOSR1.levels[i % 4]
        msgs = build_messages(q, f"{q} item {i}", {"colour": "red"}, config=PromptConfig(instructions="compact"))
        corpus += [m["content"] for m in msgs] + [format_response(lv.label, f"query wants {q}; {lv.name}")]
        rows.append({"data_source": "taosr1_synth", "prompt": msgs, "ability": "relevance",
                     "reward_model": {"style": "rule", "ground_truth": lv.label},
                     "extra_info": {"split": "train", "index": i}})
    model = build_tiny_qwen2(tmp / "model", corpus)
    pq.write_table(pa.Table.from_pylist(rows), tmp / "rl.parquet")
    return model, tmp / "rl.parquet"


def run_grpo(tmp: Path, steps: int, batch: int, n: int, response_len: int) -> str:
    from taosr1_verl.integrations.verl.supervise import run_recipe

    model, data = make_inputs(tmp)
    log = tmp / "grpo.log"
    result = run_recipe("grpo", [
        f"actor_rollout_ref.model.path={model}", f"data.train_files={data}", f"data.val_files={data}",
        f"data.train_batch_size={batch}", "data.max_prompt_length=512", f"data.max_response_length={response_len}",
        f"actor_rollout_ref.rollout.n={n}", f"actor_rollout_ref.actor.ppo_mini_batch_size={batch}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={batch}",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={batch}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={batch}",
        # random tiny model: every group is constant, so run the plain trainer; the sampler is timed below
        "algorithm.filter_groups.enable=false", "trainer.v1.trainer_mode=sync",
        "trainer.v1.sampler.custom_sampler.path=null", "trainer.v1.sampler.custom_sampler.name=null",
        "trainer.test_freq=-1", "trainer.val_before_train=false", "trainer.save_freq=-1",
        f"trainer.total_training_steps={steps}", f"trainer.default_local_dir={tmp / 'ckpt'}",
    ], device="cpu", log_path=log, timeout_s=580, echo=lambda line: None)
    if not result.ok:
        sys.exit(f"GRPO run failed (rc {result.returncode}); log: {log}")
    return log.read_text(errors="replace")


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def plugin_costs(batch: int, n: int, repeats: int = 21) -> tuple[float, float]:
    """(reward seconds, sampler seconds) for one step: batch prompts x n rollouts."""
    import numpy as np

    from taosr1_verl.response import format_response
    from taosr1_verl.rewards import compute_score
    from taosr1_verl.sampling import DifficultyTracker, GroupRule, SelectionPolicy

    rng = np.random.default_rng(0)
    labels = ["4", "3", "2", "1"]
    responses = []
    for i in range(batch * n):
        r = rng.random()
        text = format_response(labels[i % 4], "category matches; colour differs; " * 4)
        responses.append(text if r < 0.7 else ("garbage " * 10 if r < 0.85 else text[:-3]))
    golds = [labels[rng.integers(4)] for _ in responses]

    def reward():
        for s, g in zip(responses, golds, strict=True):
            compute_score("taosr1_synth", s, g)

    size = 10_000
    tracker = DifficultyTracker(size)
    rule = GroupRule.taosr1()
    policy = SelectionPolicy(tracker, rule, size=size)
    step = [0]

    def sampler():
        step[0] += 1
        idx = rng.integers(0, size, batch)
        correct = rng.integers(0, n + 1, batch)
        rule.keep_mask(correct, n)
        tracker.update(idx, correct=correct, n=n, step=step[0])
        policy.select(batch)

    reward()
    sampler()
    return _median_time(reward, repeats), _median_time(sampler, repeats)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=4, help="prompts per step")
    p.add_argument("--n", type=int, default=4, help="rollouts per prompt")
    p.add_argument("--response-length", type=int, default=32)
    p.add_argument("--from-log", help="parse this GRPO log instead of running (pass the sizes it ran with)")
    args = p.parse_args(argv)

    if args.from_log:
        log = Path(args.from_log).read_text(errors="replace")
    else:
        with tempfile.TemporaryDirectory(prefix="bench_grpo_") as tmp:
            log = run_grpo(Path(tmp), args.steps, args.batch, args.n, args.response_length)
    steps = parse_timings(log)
    if len(steps) < 2:
        sys.exit(f"need >= 2 logged steps with timings, found {len(steps)}")
    later = steps[1:]  # the first step carries vLLM/FSDP warm-up
    med = {name: statistics.median(sum(s.get(k, 0.0) for k in keys) for s in later)
           for name, keys in STAGES.items()}
    step_s = statistics.median(s["step"] for s in later)
    reward_s, sampler_s = plugin_costs(args.batch, args.n)

    print(f"GRPO step on CPU: tiny Qwen2, {args.batch} prompts x {args.n} rollouts, {args.response_length} new "
          f"tokens; verl timers median over steps 2..{len(steps)}; plugin parts median of 21 (1 thread)")
    print("| part | seconds | share of step |")
    print("|---|---|---|")
    for name, sec in med.items():
        print(f"| {name} | {sec:.3f} | {sec / step_s:.1%} |")
    print(f"| **whole step** | {step_s:.3f} | 100% |")
    print(f"| plugin: TaoSR1 reward ({args.batch * args.n} rollouts) | {reward_s:.6f} | {reward_s / step_s:.4%} |")
    print(f"| plugin: sampler (rule + tracker + selection) | {sampler_s:.6f} | {sampler_s / step_s:.4%} |")
    share = (reward_s + sampler_s) / step_s
    print(f"\nplugin share (reward + sampler): {share:.4%} of a step; target < 1%: {'met' if share < 0.01 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
