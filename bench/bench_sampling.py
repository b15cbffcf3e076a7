"""Difficulty-based dynamic sampling vs uniform sampling and verl's std-zero filter, in simulation.

A population of prompts with hidden per-prompt success probabilities shaped like a post-SFT relevance
model (many easy, some hopeless, some in between; harder for rare classes), TaoSR1's label mix
(levels 4/3/2/1 = 50/5/36/9 %), and learning: each time a prompt's group is trained on with signal
(0 < correct < G), its success probability rises (logit + ``--eta``). Every method trains the same number
of batches of ``--batch`` groups of ``G`` rollouts:

- ``uniform``: roll out a uniformly drawn batch and train on all of it (no filter).
- ``std-zero``: verl 0.9.1's sync ``algorithm.filter_groups`` loop: evict constant groups, refill 2 prompts
  per evicted one (at most one batch in flight), drain, discard the surplus.
- ``ours``: the same loop, but prompts come from :class:`SelectionPolicy` over a :class:`DifficultyTracker`
  seeded from a pass@5 file (the DPO stage's) and fed every finished group; the kept batch is chosen
  class-balanced. ``ours (no pass@N seed)`` starts from the prior.

"Informative" means 0 < correct < G for every method (the std-zero band), so the numbers compare directly.
Reported per method (median over ``--seeds``): rollouts per trained informative group, wasted-rollout
fraction (rollouts not in a trained informative group), CV of the class counts of the trained groups, and
mean success probability at the end. Then the selection overhead per step at ``--overhead-batch`` prompts;
``--overhead-ref REF`` times the sampling package committed at ``REF`` against the working tree's in the
same run (interleaved step by step) and checks that both select the same prompts.

Run (threads pinned to 1 for numpy/BLAS; stated in the output):
    flock /tmp/taosr1-heavy.lock .venv/bin/python bench/bench_sampling.py
    flock /tmp/taosr1-heavy.lock .venv/bin/python bench/bench_sampling.py --overhead-only --overhead-ref d1fb359
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from taosr1_verl import sampling  # noqa: E402
from taosr1_verl.sampling import (  # noqa: E402
    DifficultyTracker,
    GroupRule,
    PolicyConfig,
    RefillPlanner,
    SelectionPolicy,
)

LEVELS = np.array([4, 3, 2, 1])
LEVEL_MIX = np.array([0.50, 0.05, 0.36, 0.09])


@dataclass
class Population:
    p: np.ndarray
    level: np.ndarray


def make_population(n: int, rng: np.random.Generator) -> Population:
    level = rng.choice(LEVELS, size=n, p=LEVEL_MIX)
    kind = rng.random(n)
    # Rare "Related" (3) pairs are the hard ones (TaoSR1's class-3 F1 is the lowest): fewer easy prompts.
    easy_share = np.where(level == 3, 0.25, 0.55)
    hopeless_share = np.where(level == 3, 0.25, 0.15)
    p = np.where(
        kind < easy_share,
        rng.beta(12.0, 1.0, n),
        np.where(kind < easy_share + hopeless_share, rng.beta(0.5, 25.0, n), rng.beta(2.0, 2.0, n)),
    )
    return Population(p=p, level=level)


def cv(counts: np.ndarray) -> float:
    counts = counts.astype(float)
    return float(counts.std() / counts.mean()) if counts.mean() > 0 else 0.0


@dataclass
class Result:
    rollouts: int = 0
    informative_trained: int = 0
    class_counts: np.ndarray | None = None
    final_p: float = 0.0


def run_method(method: str, pop0: Population, g: int, steps: int, batch: int, eta: float, seed: int) -> Result:
    rng = np.random.default_rng([seed, 1])
    p = pop0.p.copy()
    n = p.size
    rule = GroupRule()
    lo, hi = rule.bounds(g)
    res = Result(class_counts=np.zeros(LEVELS.size, dtype=np.int64))
    level_pos = {int(lv): i for i, lv in enumerate(LEVELS)}

    # A uniform stream without replacement (epochs), for the baselines.
    state = {"perm": rng.permutation(n), "cur": 0}

    def uniform(m: int) -> np.ndarray:
        out = []
        while m > 0:
            if state["cur"] >= n:
                state["perm"], state["cur"] = rng.permutation(n), 0
            take = state["perm"][state["cur"] : state["cur"] + m]
            state["cur"] += take.size
            m -= take.size
            out.append(take)
        return np.concatenate(out)

    tracker = policy = planner = None
    if method.startswith("ours"):
        tracker = DifficultyTracker(n)
        if method == "ours":
            # The DPO stage's pass@5 at the starting model.
            tracker.update(np.arange(n), rng.binomial(5, pop0.p), 5, step=0)
            tracker.groups[:] = 0
        policy = SelectionPolicy(
            tracker, rule, PolicyConfig(group_size=g, seed=seed), levels=pop0.level
        )
        planner = RefillPlanner()

    def train(idx: np.ndarray, correct: np.ndarray) -> None:
        inf = (correct >= lo) & (correct <= hi)
        res.informative_trained += int(inf.sum())
        t = idx[inf]
        for lv in pop0.level[idx]:
            res.class_counts[level_pos[int(lv)]] += 1
        logit = np.log(p[t] / (1 - p[t] + 1e-12) + 1e-12) + eta
        p[t] = 1.0 / (1.0 + np.exp(-logit))

    for step in range(1, steps + 1):
        if method == "uniform":
            idx = uniform(batch)
            correct = rng.binomial(g, p[idx])
            res.rollouts += idx.size * g
            train(idx, correct)
            continue
        kept_idx: list[np.ndarray] = []
        kept_c: list[np.ndarray] = []
        kept = 0
        dispatch = batch
        while True:
            idx = policy.select(dispatch) if policy is not None else uniform(dispatch)
            correct = rng.binomial(g, p[idx])
            res.rollouts += idx.size * g
            if tracker is not None:
                tracker.update(policy.keys[idx], correct, g, step=step)
            keep = (correct >= lo) & (correct <= hi)
            kept_idx.append(idx[keep])
            kept_c.append(correct[keep])
            kept += int(keep.sum())
            if planner is not None:
                planner.observe(int(keep.sum()), idx.size)
            if kept >= batch:
                break
            if planner is not None:
                dispatch = planner.plan(batch - kept, cap=batch)
            else:
                # verl: 2 new prompts per evicted group, at most one batch in flight.
                dispatch = min(2 * int((~keep).sum()), batch) or batch
        idx = np.concatenate(kept_idx)
        correct = np.concatenate(kept_c)
        if method.startswith("ours"):
            # Class-balanced choice of the batch among the kept groups (round-robin over classes).
            lv = pop0.level[idx]
            rank = np.zeros(idx.size, dtype=np.int64)
            for v in np.unique(lv):
                m = lv == v
                rank[m] = np.arange(int(m.sum()))
            order = np.lexsort((lv, rank))[:batch]
        else:
            order = np.arange(batch)  # verl takes the oldest; all are equally old here
        train(idx[order], correct[order])
    res.final_p = float(p.mean())
    return res


def load_sampling_at(ref: str) -> ModuleType:
    """``taosr1_verl.sampling`` as committed at git ``ref``, imported under another name beside the working
    tree's (its absolute imports are renamed), so both can be timed in one process."""
    root = Path(__file__).resolve().parents[1]
    sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", ref], check=True, capture_output=True,
                         text=True).stdout.strip()
    name = f"_taosr1_ref_{sha}"
    pkg_dir = Path(tempfile.mkdtemp(prefix="bench_sampling_ref_")) / name / "sampling"
    pkg_dir.mkdir(parents=True)
    (pkg_dir.parent / "__init__.py").write_text("")
    files = subprocess.run(["git", "-C", str(root), "ls-tree", "--name-only", sha, "taosr1_verl/sampling/"],
                           check=True, capture_output=True, text=True).stdout.split()
    for f in files:
        text = subprocess.run(["git", "-C", str(root), "show", f"{sha}:{f}"], check=True, capture_output=True,
                              text=True).stdout
        (pkg_dir / Path(f).name).write_text(text.replace("taosr1_verl.sampling", f"{name}.sampling"))
    sys.path.insert(0, str(pkg_dir.parents[1]))
    module = importlib.import_module(f"{name}.sampling")
    module.__dict__["LABEL"] = f"{ref} ({sha})"
    return module


def overhead(sides: dict[str, ModuleType], n: int, batch: int, g: int, steps: int) -> tuple[dict[str, float], bool]:
    """Median ms per step of each sampling package (select + classify + tracker update), plus verl's std-zero
    classification under ``"verl"``; and whether every side selected the same prompts at every step.

    Sides run step by step interleaved, in alternating order, so machine load falls on all of them alike.
    """
    rng = np.random.default_rng(0)
    pop = make_population(n, rng)
    passn = rng.binomial(5, pop.p)
    state = {}
    for name, mod in sides.items():
        tracker = mod.DifficultyTracker(n)
        tracker.update(np.arange(n), passn, 5)
        rule = mod.GroupRule()
        policy = mod.SelectionPolicy(tracker, rule, mod.PolicyConfig(group_size=g, seed=0), levels=pop.level)
        # Each side draws the simulated outcomes from its own copy of one stream: same prompts, same outcomes.
        state[name] = (tracker, rule, policy, np.random.default_rng(1))
    times: dict[str, list[float]] = {name: [] for name in [*sides, "verl"]}
    identical = True
    names = list(sides)
    for step in range(steps):
        picked = {}
        for name in names if step % 2 == 0 else names[::-1]:
            tracker, rule, policy, out_rng = state[name]
            t0 = time.perf_counter()
            idx = policy.select(batch)
            t1 = time.perf_counter()
            # The rollouts' outcomes are the simulation, not the sampler's work: untimed, as for the baseline.
            correct = out_rng.binomial(g, pop.p[idx])
            t2 = time.perf_counter()
            rule.classify(correct, g)
            tracker.update(idx, correct, g, step=step)
            t3 = time.perf_counter()
            times[name].append((t1 - t0) + (t3 - t2))
            picked[name] = idx
        identical &= all(np.array_equal(picked[names[0]], x) for x in picked.values())
        # verl's rule on the per-rollout 0/1 values: one np.std per group (see ReplayBuffer._dapo_filtered_keys).
        values = (rng.random((batch, g)) < pop.p[picked[names[0]], None]).astype(float)
        t4 = time.perf_counter()
        _ = [float(np.std(v)) == 0.0 for v in values]
        times["verl"].append(time.perf_counter() - t4)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}, identical


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--eta", type=float, default=0.4, help="logit gain of a prompt each time it is trained with signal")
    ap.add_argument("--groups", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--overhead-prompts", type=int, default=1_000_000)
    ap.add_argument("--overhead-batch", type=int, default=4096)
    ap.add_argument("--overhead-steps", type=int, default=30)
    ap.add_argument("--overhead-ref", default=None,
                    help="git ref whose taosr1_verl/sampling is timed against the working tree's, interleaved")
    ap.add_argument("--overhead-only", action="store_true", help="skip the simulation tables")
    args = ap.parse_args()

    methods = ["uniform", "std-zero", "ours", "ours (no pass@N seed)"]
    keys = {"ours (no pass@N seed)": "ours-noseed"}
    print(f"threads: OMP/OPENBLAS/MKL_NUM_THREADS=1; prompts={args.prompts}, batch={args.batch} groups, "
          f"steps={args.steps}, eta={args.eta}, medians over {args.seeds} seeds")
    for g in [] if args.overhead_only else args.groups:
        table: dict[str, list[tuple[float, float, float, float]]] = {m: [] for m in methods}
        for seed in tqdm(range(args.seeds), desc=f"G={g}", leave=False):
            pop = make_population(args.prompts, np.random.default_rng([seed, 0]))
            for m in methods:
                r = run_method(keys.get(m, m), pop, g, args.steps, args.batch, args.eta, seed)
                table[m].append((
                    r.rollouts / max(r.informative_trained, 1),
                    1.0 - r.informative_trained * g / r.rollouts,
                    cv(r.class_counts),
                    r.final_p,
                ))
        med = {m: [statistics.median(x[i] for x in rows) for i in range(4)] for m, rows in table.items()}
        ref = med["std-zero"][0]
        print(f"\nG = {g}")
        print("| method | rollouts / informative group | vs std-zero | wasted rollouts | class-mix CV | mean p at end |")
        print("|---|---|---|---|---|---|")
        for m in methods:
            rpi, waste, c, fp = med[m]
            print(f"| {m} | {rpi:.2f} | {ref / rpi:.2f}x | {waste:.1%} | {c:.2f} | {fp:.3f} |")
    sides: dict[str, ModuleType] = {"working tree": sampling}
    if args.overhead_ref:
        ref = load_sampling_at(args.overhead_ref)
        sides = {ref.LABEL: ref, **sides}
    load_before = os.getloadavg()[0]
    ms, identical = overhead(sides, args.overhead_prompts, args.overhead_batch, 16, args.overhead_steps)
    print(f"\nOverhead per step, {args.overhead_batch}-prompt batches, {args.overhead_prompts} prompts, G=16, "
          f"median of {args.overhead_steps} steps, 1 thread, sides interleaved step by step; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("| part | ms / step | vs working tree |")
    print("|---|---|---|")
    for name in sides:
        print(f"| {name}: select + classify + tracker update | {ms[name]:.2f} | "
              f"{ms[name] / ms['working tree']:.2f}x |")
    print(f"| verl std-zero classification (np.std per group) | {ms['verl']:.2f} | |")
    print("| target | < 5 | |")
    if len(sides) > 1:
        print(f"\nsame prompts selected by every side at every step: {'yes' if identical else 'NO'}")

if __name__ == "__main__":
    main()
