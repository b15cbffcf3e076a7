"""Real verl GRPO on CPU: our difficulty-aware sampler vs verl's built-in std-zero filter, same seed.

Both runs start from the same finished demo run (data, SFT, pass@N, DPO: everything up to ``eval_dpo``),
copied twice, and run the demo's ``grpo`` stage with ``--sampler taosr1`` and ``--sampler verl``
(verl's sync trainer, random prompt order, ``algorithm.filter_groups`` on the ``acc`` metric). Both
buffers inherit verl's refill/drain machinery and log verl's own ``training/filter_groups/*`` counters,
so the rollouts thrown away are counted the same way in both:

    wasted rollouts = (evicted groups + discarded surplus groups) x n   (verl counts prompt uids)
    rollouts finished = wasted + trained (train_batch_size x n per step)

The table gives the totals over all steps and the ratios ours / verl. Slow (two GRPO runs):

    flock /tmp/taosr1-heavy.lock .venv/bin/python bench/bench_grpo_sampler.py --run-dir runs/demo
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

from taosr1_verl.integrations.verl.verl_logs import read_metric_series
from taosr1_verl.pipeline.demo import PROFILES, build_pipeline
from taosr1_verl.pipeline.stages import RECORD, read_settings

UPSTREAM = ("data", "model", "sft", "eval_sft", "passn", "dpo", "eval_dpo")
KEYS = ("training/filter_groups/evicted_samples", "training/filter_groups/discarded_surplus_samples",
        "critic/score/mean", "timing_s/step")


def _copy_upstream(src: Path, dst: Path, sampler: str) -> None:
    # The demo's own GRPO stage already ran with our sampler: reuse it (the pipeline checks its record).
    extra = ("grpo",) if sampler == "taosr1" and (src / "grpo" / RECORD).exists() else ()
    for name in (*UPSTREAM, *extra):
        if not (src / name / RECORD).exists():
            raise SystemExit(f"{src / name} is not a finished stage: run `taosr1 demo --run-dir {src}` first")
        shutil.copytree(src / name, dst / name, dirs_exist_ok=True)


def _run(src: Path, work: Path, sampler: str, profile: str, seed: int, model: str) -> dict[str, float]:
    dst = work / sampler
    if not (dst / "grpo" / RECORD).exists():
        _copy_upstream(src, dst, sampler)
        build_pipeline(dst, profile, seed, sampler, model).run(until="grpo")
    prof = PROFILES[profile]
    series = read_metric_series(dst / "grpo" / "grpo.log", KEYS)
    steps = len(series.get("timing_s/step", []))
    trained = steps * prof.grpo_batch * prof.grpo_n
    evicted = sum(series.get(KEYS[0], [])) * prof.grpo_n  # verl counts groups (prompt uids)
    surplus = sum(series.get(KEYS[1], [])) * prof.grpo_n
    finished = trained + evicted + surplus
    return {"steps": steps, "rollouts_finished": finished, "rollouts_trained": trained,
            "evicted_rollouts": evicted, "surplus_rollouts": surplus,
            "wasted_fraction": (evicted + surplus) / finished if finished else 0.0,
            "rollouts_per_trained_group": finished / max(steps * prof.grpo_batch, 1),
            "mean_score": statistics.fmean(series.get("critic/score/mean") or [0.0]),
            "median_step_s": statistics.median(series.get("timing_s/step") or [0.0])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, required=True, help="a finished demo run (up to eval_dpo)")
    ap.add_argument("--work", type=Path, default=None, help="where the two copies go (default RUN_DIR.sampler_bench)")
    ap.add_argument("--profile", default=None, help="demo profile of the run (default: read from its records)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    settings = read_settings(args.run_dir / "data")  # profile, seed, model
    profile = args.profile or settings["profile"]["name"]
    seed = settings.get("seed", 0) if args.seed is None else args.seed
    work = args.work or args.run_dir.with_name(args.run_dir.name + ".sampler_bench")
    rows = {s: _run(args.run_dir, work, s, profile, seed, settings.get("model", "tiny")) for s in ("verl", "taosr1")}
    ours, verl = rows["taosr1"], rows["verl"]
    print(f"GRPO on CPU, profile {profile}, seed {seed}, {ours['steps']} steps each, same upstream run\n")
    print("| metric | verl std-zero filter | TaoSR1 sampler | ours / verl |")
    print("|---|---|---|---|")
    for key in ("rollouts_finished", "rollouts_trained", "evicted_rollouts", "surplus_rollouts", "wasted_fraction",
                "rollouts_per_trained_group", "mean_score", "median_step_s"):
        a, b = verl[key], ours[key]
        ratio = f"{b / a:.2f}x" if a else "n/a"
        fmt = (lambda v: f"{v:.3f}") if key in ("wasted_fraction", "rollouts_per_trained_group", "mean_score",
                                                "median_step_s") else (lambda v: f"{v:.0f}")
        print(f"| {key} | {fmt(a)} | {fmt(b)} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
