"""Synthetic catalog speed: 100k pairs must generate in under 10 s on one core (issue 3).

Run: flock /tmp/taosr1-heavy.lock taskset -c 0 .venv/bin/python bench/bench_synth.py
Pure Python, single thread (pinned to one core with taskset; torch is not imported). Prints the median
wall time over repeats of each stage for N pairs, pairs/s, and the ratio to the 10 s budget; the
alternative column compares our bisect-based weighted choice with ``random.choices`` per draw (what a
straightforward generator would call), timed in the same run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time


def median_s(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from taosr1_verl.data import write_rl_parquet
    from taosr1_verl.data.synth import DEFAULT_LABEL_MIX, generate_synthetic, load_rules, rule_teacher
    from taosr1_verl.data.synth.catalog import WeightedChooser

    kb = load_rules()
    n = args.n
    pairs = generate_synthetic(n, seed=0)
    d = tempfile.mkdtemp()
    stages = {
        "generate pairs": lambda: generate_synthetic(n, seed=0),
        "rule teacher (all pairs)": lambda: [rule_teacher(p, kb) for p in pairs],
        "generate + teacher": lambda: [rule_teacher(p, kb) for p in generate_synthetic(n, seed=0)],
        "RL parquet (balanced)": lambda: write_rl_parquet(pairs, os.path.join(d, "rl.parquet")),
    }
    print(f"N = {n} pairs, {args.repeat} repeats, median, 1 thread (pid {os.getpid()}, "
          f"affinity {sorted(os.sched_getaffinity(0))})\n")
    print("| stage | seconds | pairs/s | share of 10 s budget |")
    print("|---|---|---|---|")
    for name, fn in stages.items():
        s = median_s(fn, args.repeat)
        print(f"| {name} | {s:.2f} | {n / s:,.0f} | {s / 10:.2f} |")

    rng = random.Random(0)
    choose = WeightedChooser(DEFAULT_LABEL_MIX)
    keys, weights = list(DEFAULT_LABEL_MIX), list(DEFAULT_LABEL_MIX.values())
    draws = 1_000_000
    ours = median_s(lambda: [choose(rng) for _ in range(draws)], args.repeat)
    alt = median_s(lambda: [rng.choices(keys, weights)[0] for _ in range(draws)], args.repeat)
    print(f"\n| weighted draw (1M) | seconds | ratio vs ours |\n|---|---|---|\n| ours (bisect on cumulative) | "
          f"{ours:.3f} | 1.00 |\n| random.choices per draw | {alt:.3f} | {alt / ours:.2f} |")


if __name__ == "__main__":
    main()
