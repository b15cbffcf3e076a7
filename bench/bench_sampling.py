"""Prompt-selection methods for GRPO at a fixed rollout budget, in simulation: ours, verl's std-zero filter,
uniform sampling, learnability (LILO), Thompson sampling (MoPPS, alone and with the filter) and a difficulty
curriculum (AdaRFT).

The simulated population: prompts with hidden per-prompt success probabilities shaped like a post-SFT
relevance model (many easy, some hopeless, some in between; harder for rare classes) and TaoSR1's label mix
(levels 4/3/2/1 = 50/5/36/9 %). Learning: each time a prompt's group is trained on with signal
(``0 < correct < G``) its success probability rises by ``--eta`` in log-odds; nothing else changes. Every
method gets the same populations, the same rollout outcomes stream and the same budget: the rollouts uniform
sampling spends in ``--steps`` steps of ``--batch`` prompts x ``G`` (the pass@5 seed some methods read is the
DPO stage's and is not counted).

Quality measure. Training one prompt moves only that prompt, so a held-out set of prompts would never change:
the simulation has no transfer to measure. What it does make meaningful is the model's true pass rate over
the prompt population (its expected accuracy on the task distribution the training set samples), reported
as ``mean p``, and the mean over gold levels of each level's mean pass rate, ``macro p`` (the stand-in for
TaoSR1's macro-F1, which weighs the 5 % "Related" class like the 50 % "Excellent" one). The number of
informative groups trained is reported too, but it is not the quality: one trained group raises a pass rate
by about ``eta * p * (1 - p)``, so groups near ``p = 1/2`` teach more. Quality is read at the budget
(linear between the steps around it); "fewer rollouts to std-zero's quality" is the budget over the
rollouts a method needs to reach what std-zero reaches at the budget (each run continues to twice the
budget for this).

Methods:

- ``uniform``: roll out a uniformly drawn batch (verl's shuffled loader) and train on all of it.
- ``std-zero``: verl 0.9.1's sync ``algorithm.filter_groups`` loop (DAPO's dynamic sampling, arXiv
  2503.14476): evict constant groups, refill 2 prompts per evicted one (at most one batch in flight), drain,
  discard the surplus. The reference of every ratio.
- ``ours``: the same loop, prompts from :class:`SelectionPolicy` over a :class:`DifficultyTracker` seeded
  from pass@5 and fed every finished group, refills sized by :class:`RefillPlanner`, the kept batch chosen
  class-balanced. Variants: without the pass@N seed; ``score="learnability"``; without class balance.
- ``lilo``: learnability, LILO (Foster, Sims, Forkel, Fellows, Foerster, "Learning to Reason at the Frontier
  of Learnability", arXiv 2502.12272, NeurIPS 2025): evaluate-then-select, i.e. roll out ``--lilo-ratio`` x
  batch uniformly drawn prompts and train on the batch with the highest ``p_hat * (1 - p_hat)``; the
  evaluation rollouts are the training rollouts (counted once).
- ``mopps``: Thompson sampling, MoPPS (Qu, Wang, Mao, Hu, Ommer, Ji, "Can Prompt Difficulty be Online
  Predicted for Accelerating RL Finetuning of Reasoning Models?", arXiv 2507.04632; code: thu-rllab/MoPPS and
  verl's ``recipe/mopps/mopps.py``): a Beta posterior per prompt (prior Beta(1, 1), initialised from pass@5 as
  the recipe's ``bandit_init``, 3 x the counts), ``--mopps-ratio`` x batch candidates from the loader (the
  recipe's ``ts_ratio``), one posterior sample each, the batch closest to a pass rate of 0.5 (``topk``),
  posterior update ``a <- decay * a + (1 - decay) * a0 + correct`` (``--mopps-decay``, the recipe's
  ``bandit_decay_ratio``); defaults 8 and 0.5 are its Countdown scripts'. Trains on every group, as the
  recipe's ``topk`` scripts (filter off). ``mopps-dapo``: the same selection inside the std-zero loop.
- ``adarft``: difficulty curriculum, AdaRFT (Shi, Wu, Song, Zhou, Zhao, "Efficient Reinforcement Finetuning
  via Adaptive Curriculum Learning", arXiv 2504.05520): static difficulty ``100 * (1 - pass@5 rate)``, target
  ``T`` from 0, each step the batch closest to ``T`` among prompts unused in this pass, then
  ``T <- clip(T + eta * tanh(alpha * (mean reward - beta)), 0, 100)`` with ``alpha = 2``, ``beta = 0.5``,
  ``eta = --adarft-eta`` (50).

Medians over ``--seeds`` seeds. Then the selection overhead per step at ``--overhead-batch`` prompts;
``--overhead-ref REF`` times the sampling package committed at ``REF`` against the working tree's in the same
run (interleaved step by step) and checks that both select the same prompts.

Run (threads pinned to 1 for numpy/BLAS; stated in the output):
    flock /tmp/taosr1-heavy.lock .venv/bin/python bench/bench_sampling.py --no-overhead
    flock /tmp/taosr1-heavy.lock .venv/bin/python bench/bench_sampling.py --overhead-only --overhead-ref d1fb359
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

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


LEVEL_POS = np.full(int(LEVELS.max()) + 1, -1, dtype=np.int64)
LEVEL_POS[LEVELS] = np.arange(LEVELS.size)


class Stream:
    """Uniform positions without replacement, reshuffled every pass: verl's shuffled dataloader."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n, self.rng = n, rng
        self.perm, self.cur = rng.permutation(n), 0

    def take(self, m: int) -> np.ndarray:
        out = []
        while m > 0:
            if self.cur >= self.n:
                self.perm, self.cur = self.rng.permutation(self.n), 0
            part = self.perm[self.cur : self.cur + m]
            self.cur += part.size
            m -= part.size
            out.append(part)
        return np.concatenate(out)


class Sim:
    """One simulated run: hidden pass rates that rise when trained on with signal, and the rollouts spent."""

    def __init__(self, pop: Population, g: int, eta: float, seed: int) -> None:
        self.p = pop.p.copy()
        self.level = pop.level
        self.cls = LEVEL_POS[pop.level]
        self.cls_size = np.bincount(self.cls, minlength=LEVELS.size)
        self.g, self.eta = g, eta
        self.lo, self.hi = GroupRule().bounds(g)
        self.rng = np.random.default_rng([seed, 1])
        self.stream = Stream(self.p.size, self.rng)  # drawn first, so every method sees the same outcomes stream
        self.rollouts = 0
        self.informative = 0
        self.class_counts = np.zeros(LEVELS.size, dtype=np.int64)

    def rollout(self, idx: np.ndarray) -> np.ndarray:
        self.rollouts += idx.size * self.g
        return self.rng.binomial(self.g, self.p[idx])

    def informative_mask(self, correct: np.ndarray) -> np.ndarray:
        return (correct >= self.lo) & (correct <= self.hi)

    def train(self, idx: np.ndarray, correct: np.ndarray) -> None:
        inf = self.informative_mask(correct)
        self.informative += int(inf.sum())
        self.class_counts += np.bincount(self.cls[idx], minlength=LEVELS.size)
        t = idx[inf]
        logit = np.log(self.p[t] / (1 - self.p[t] + 1e-12) + 1e-12) + self.eta
        self.p[t] = 1.0 / (1.0 + np.exp(-logit))

    def quality(self) -> tuple[float, float]:
        """(mean true pass rate over all prompts, mean over gold levels of each level's mean pass rate)."""
        per_class = np.bincount(self.cls, weights=self.p, minlength=LEVELS.size) / self.cls_size
        return float(self.p.mean()), float(per_class.mean())


def filter_step(sim: Sim, batch: int, select, observe=None, planner: RefillPlanner | None = None,
                balance: bool = False) -> None:
    """verl 0.9.1's sync ``filter_groups`` loop: roll out, evict constant groups, refill, drain, train on
    ``batch`` kept groups and discard the surplus. ``planner``: our refill sizing instead of verl's 2 prompts
    per evicted group; ``balance``: our class-balanced choice among the kept groups instead of the oldest."""
    kept_idx: list[np.ndarray] = []
    kept_c: list[np.ndarray] = []
    kept = 0
    dispatch = batch
    while True:
        idx = select(dispatch)
        correct = sim.rollout(idx)
        if observe is not None:
            observe(idx, correct)
        keep = sim.informative_mask(correct)
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
    if balance:
        # Class-balanced choice of the batch among the kept groups (round-robin over classes).
        lv = sim.level[idx]
        rank = np.zeros(idx.size, dtype=np.int64)
        for v in np.unique(lv):
            m = lv == v
            rank[m] = np.arange(int(m.sum()))
        order = np.lexsort((lv, rank))[:batch]
    else:
        order = np.arange(batch)  # verl takes the oldest; all are equally old here
    sim.train(idx[order], correct[order])


class MoPPS:
    """Thompson sampling over per-prompt Beta posteriors (MoPPS, arXiv 2507.04632; verl ``recipe/mopps``):
    draw ``ratio * m`` candidates from the shuffled loader, sample a pass rate from each one's posterior and
    keep the ``m`` closest to ``target``; after the rollouts ``a <- decay * a + (1 - decay) * a0 + correct``,
    likewise ``b`` with the wrong ones. ``seed_counts``: initialise from pass@5 as the recipe's
    ``bandit_init`` does (``a = 3 * successes + a0``)."""

    def __init__(self, sim: Sim, seed: int, ratio: float, decay: float, target: float = 0.5,
                 seed_counts: np.ndarray | None = None, seed_n: int = 5) -> None:
        self.sim, self.ratio, self.decay, self.target = sim, ratio, decay, target
        self.rng = np.random.default_rng([seed, 2])
        n = sim.p.size
        self.a0 = self.b0 = 1.0
        self.a = np.full(n, self.a0)
        self.b = np.full(n, self.b0)
        if seed_counts is not None:
            self.a += 3.0 * seed_counts
            self.b += 3.0 * (seed_n - seed_counts)

    def select(self, m: int) -> np.ndarray:
        cand = self.sim.stream.take(max(m, math.ceil(self.ratio * m)))
        r = self.rng.beta(self.a[cand], self.b[cand])
        return cand[np.argsort((r - self.target) ** 2, kind="stable")[:m]]

    def observe(self, idx: np.ndarray, correct: np.ndarray) -> None:
        d = self.decay
        self.a[idx] = d * self.a[idx] + (1 - d) * self.a0 + correct
        self.b[idx] = d * self.b[idx] + (1 - d) * self.b0 + (self.sim.g - correct)


class AdaRFT:
    """Adaptive difficulty curriculum (AdaRFT, arXiv 2504.05520): a static difficulty per prompt (here
    ``100 * (1 - pass@5 rate)``), a target difficulty ``T``; each step trains the ``batch`` prompts closest to
    ``T`` not yet used in this pass, then ``T <- clip(T + eta * tanh(alpha * (mean reward - beta)), 0, 100)``."""

    def __init__(self, sim: Sim, seed: int, difficulty: np.ndarray, eta: float = 50.0, alpha: float = 2.0,
                 beta: float = 0.5, t0: float = 0.0) -> None:
        self.sim, self.d = sim, difficulty
        self.eta, self.alpha, self.beta, self.t = eta, alpha, beta, t0
        self.rng = np.random.default_rng([seed, 3])
        self.used = np.zeros(difficulty.size, dtype=bool)

    def step(self, batch: int) -> None:
        free = np.flatnonzero(~self.used)
        if free.size < batch:
            self.used[:] = False
            free = np.arange(self.d.size)
        # Random tie-break: pass@5 difficulties take only six values.
        dist = np.abs(self.d[free] - self.t) + 1e-3 * self.rng.random(free.size)
        idx = free[np.argpartition(dist, batch - 1)[:batch]]
        self.used[idx] = True
        correct = self.sim.rollout(idx)
        self.sim.train(idx, correct)
        reward = float(correct.sum()) / (idx.size * self.sim.g)
        self.t = float(np.clip(self.t + self.eta * math.tanh(self.alpha * (reward - self.beta)), 0.0, 100.0))


@dataclass
class SimParams:
    """Settings of the published methods (see the module docstring for where each comes from)."""

    lilo_ratio: float = 2.0
    mopps_ratio: float = 8.0
    mopps_decay: float = 0.5
    adarft_eta: float = 50.0
    ours: dict[str, Any] = field(default_factory=dict)
    """Extra :class:`PolicyConfig` settings of ``ours`` (ablations)."""


METHODS = {
    "uniform": "uniform, no filter",
    "std-zero": "verl std-zero filter",
    "ours": "ours",
    "ours-noseed": "ours without the pass@N seed",
    "ours-learn": "ours, score=learnability",
    "ours-nobal": "ours without class balance",
    "lilo": "learnability p(1-p) (LILO)",
    "mopps": "Thompson sampling (MoPPS)",
    "mopps-dapo": "Thompson sampling + std-zero filter",
    "adarft": "difficulty curriculum (AdaRFT)",
}


@dataclass
class Curve:
    """After each step: rollouts spent, mean pass rate, macro pass rate, informative groups trained."""

    rows: list[tuple[float, float, float, float]]

    def at(self, budget: float, col: int) -> float:
        """Column ``col`` at ``budget`` rollouts, linear between the steps around it."""
        prev = self.rows[0]
        for row in self.rows[1:]:
            if row[0] >= budget:
                frac = (budget - prev[0]) / (row[0] - prev[0])
                return prev[col] + frac * (row[col] - prev[col])
            prev = row
        return float("nan")

    def reach(self, col: int, value: float) -> float:
        """Rollouts at which column ``col`` first reaches ``value`` (inf if never in the run)."""
        prev = self.rows[0]
        for row in self.rows[1:]:
            if row[col] >= value:
                frac = (value - prev[col]) / (row[col] - prev[col]) if row[col] > prev[col] else 1.0
                return prev[0] + frac * (row[0] - prev[0])
            prev = row
        return float("inf")


@dataclass
class Result:
    curve: Curve
    class_counts: np.ndarray
    steps: int


def run_method(method: str, pop0: Population, g: int, budget: int, batch: int, eta: float, seed: int,
               params: SimParams | None = None) -> Result:
    """Train with ``method`` until ``budget`` rollouts are spent (and twice that, for the time to reach a
    quality), recording the curve after every step."""
    params = params or SimParams()
    sim = Sim(pop0, g, eta, seed)
    n = sim.p.size
    passn = None
    if method in ("ours", "ours-learn", "ours-nobal", "mopps", "mopps-dapo", "adarft"):
        # The DPO stage's pass@5 at the starting model: free here, it is paid for by the DPO stage.
        passn = sim.rng.binomial(5, pop0.p)

    step_fn: Any
    if method == "uniform":
        def step_fn(step: int) -> None:
            idx = sim.stream.take(batch)
            sim.train(idx, sim.rollout(idx))
    elif method == "std-zero":
        def step_fn(step: int) -> None:
            filter_step(sim, batch, sim.stream.take)
    elif method.startswith("ours"):
        tracker = DifficultyTracker(n)
        if passn is not None:
            tracker.update(np.arange(n), passn, 5, step=0)
            tracker.groups[:] = 0
        variant = {"ours-learn": {"score": "learnability"}, "ours-nobal": {"balance_classes": False}}
        cfg = PolicyConfig(group_size=g, seed=seed, **{**variant.get(method, {}), **params.ours})
        policy = SelectionPolicy(tracker, GroupRule(), cfg, levels=pop0.level)
        planner = RefillPlanner()

        def step_fn(step: int) -> None:
            def observe(idx: np.ndarray, correct: np.ndarray) -> None:
                tracker.update(policy.keys[idx], correct, g, step=step)
            filter_step(sim, batch, policy.select, observe, planner, balance=cfg.balance_classes)
    elif method == "lilo":
        def step_fn(step: int) -> None:
            # Evaluate-then-select: roll out ratio x batch candidates, train on the highest p(1-p).
            idx = sim.stream.take(math.ceil(params.lilo_ratio * batch))
            correct = sim.rollout(idx)
            rate = correct / g
            order = np.argsort(-(rate * (1 - rate)), kind="stable")[:batch]
            sim.train(idx[order], correct[order])
    elif method in ("mopps", "mopps-dapo"):
        mopps = MoPPS(sim, seed, params.mopps_ratio, params.mopps_decay, seed_counts=passn)
        if method == "mopps":
            def step_fn(step: int) -> None:
                idx = mopps.select(batch)
                correct = sim.rollout(idx)
                mopps.observe(idx, correct)
                sim.train(idx, correct)
        else:
            def step_fn(step: int) -> None:
                filter_step(sim, batch, mopps.select, mopps.observe)
    elif method == "adarft":
        ada = AdaRFT(sim, seed, 100.0 * (1.0 - passn / 5.0), eta=params.adarft_eta)

        def step_fn(step: int) -> None:
            ada.step(batch)
    else:
        raise ValueError(f"unknown method {method!r}")

    rows = [(0.0, *sim.quality(), 0.0)]
    step = 0
    while sim.rollouts < 2 * budget:
        step += 1
        step_fn(step)
        rows.append((float(sim.rollouts), *sim.quality(), float(sim.informative)))
    return Result(curve=Curve(rows), class_counts=sim.class_counts, steps=step)


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


def simulate(args: argparse.Namespace, g: int, params: SimParams, methods: list[str]) -> None:
    """Run every method on the same populations and print the quality and efficiency tables for ``G = g``."""
    budget = args.steps * args.batch * g
    cols = ("mean p", "macro p", "gain", "macro gain", "to std-zero mean p", "to std-zero macro p",
            "informative", "rollouts / informative", "wasted", "class CV", "steps", "mean p at 2x")
    per_seed: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    starts: list[tuple[float, float]] = []
    for seed in tqdm(range(args.seeds), desc=f"G={g}", leave=False):
        pop = make_population(args.prompts, np.random.default_rng([seed, 0]))
        results = {m: run_method(m, pop, g, budget, args.batch, args.eta, seed, params) for m in methods}
        start = results[methods[0]].curve.rows[0]
        starts.append((start[1], start[2]))
        ref = results["std-zero"].curve
        ref_p, ref_macro = ref.at(budget, 1), ref.at(budget, 2)
        for m, r in results.items():
            c = r.curve
            p, macro, inf = c.at(budget, 1), c.at(budget, 2), c.at(budget, 3)
            steps_at = next(i for i, row in enumerate(c.rows) if row[0] >= budget)
            per_seed[m].append({
                "mean p": p, "macro p": macro, "gain": p - start[1], "macro gain": macro - start[2],
                "to std-zero mean p": c.reach(1, ref_p) / budget, "to std-zero macro p": c.reach(2, ref_macro) / budget,
                "informative": inf, "rollouts / informative": budget / max(inf, 1.0),
                "wasted": 1.0 - inf * g / budget, "class CV": cv(r.class_counts), "steps": float(steps_at),
                "mean p at 2x": c.rows[-1][1],
            })
    med = {m: {k: statistics.median(s[k] for s in rows) for k in cols} for m, rows in per_seed.items()}
    ref = med["std-zero"]

    def ratio(x: float, y: float) -> str:
        return f"{x / y:.2f}x" if y > 0 and math.isfinite(x / y) else "-"

    def reach(x: float) -> str:
        return f"{1 / x:.2f}x" if math.isfinite(x) else "not within 2x"

    print(f"\nG = {g}: fixed budget {budget:,} rollouts ({args.steps} steps x {args.batch} prompts x {g}, what "
          f"uniform spends); medians over {args.seeds} seeds; start: mean p "
          f"{statistics.median(x[0] for x in starts):.4f}, macro p {statistics.median(x[1] for x in starts):.4f}")
    print("Quality at the budget (gain = rise of the true pass rate over the start; 'fewer rollouts to reach' = "
          "budget / rollouts this method needs to reach std-zero's quality at the budget):")
    print("| method | mean p | gain | gain vs std-zero | macro p | macro gain vs std-zero "
          "| fewer rollouts to std-zero's mean p | to its macro p | steps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        x = med[m]
        print(f"| {METHODS[m]} | {x['mean p']:.4f} | {x['gain']:+.4f} | {ratio(x['gain'], ref['gain'])} "
              f"| {x['macro p']:.4f} | {ratio(x['macro gain'], ref['macro gain'])} "
              f"| {reach(x['to std-zero mean p'])} | {reach(x['to std-zero macro p'])} | {x['steps']:.0f} |")
    print("Efficiency within the budget (informative = 0 < correct < G, trained on):")
    print("| method | informative groups trained | vs std-zero | rollouts / informative group | vs std-zero "
          "| wasted rollouts | class-mix CV |")
    print("|---|---|---|---|---|---|---|")
    for m in methods:
        x = med[m]
        print(f"| {METHODS[m]} | {x['informative']:.0f} | {ratio(x['informative'], ref['informative'])} "
              f"| {x['rollouts / informative']:.2f} | {ratio(ref['rollouts / informative'], x['rollouts / informative'])} "
              f"| {x['wasted']:.1%} | {x['class CV']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=60,
                    help="the rollout budget is what uniform sampling spends in this many steps")
    ap.add_argument("--eta", type=float, default=0.4, help="logit gain of a prompt each time it is trained with signal")
    ap.add_argument("--groups", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--lilo-ratio", type=float, default=SimParams.lilo_ratio,
                    help="LILO: candidates rolled out per trained prompt")
    ap.add_argument("--mopps-ratio", type=float, default=SimParams.mopps_ratio,
                    help="MoPPS: candidates scored per selected prompt (the recipe's ts_ratio)")
    ap.add_argument("--mopps-decay", type=float, default=SimParams.mopps_decay,
                    help="MoPPS: posterior decay (the recipe's bandit_decay_ratio)")
    ap.add_argument("--adarft-eta", type=float, default=SimParams.adarft_eta, help="AdaRFT: target step size")
    ap.add_argument("--overhead-prompts", type=int, default=1_000_000)
    ap.add_argument("--overhead-batch", type=int, default=4096)
    ap.add_argument("--overhead-steps", type=int, default=30)
    ap.add_argument("--overhead-ref", default=None,
                    help="git ref whose taosr1_verl/sampling is timed against the working tree's, interleaved")
    ap.add_argument("--overhead-only", action="store_true", help="skip the simulation tables")
    ap.add_argument("--no-overhead", action="store_true", help="skip the overhead table")
    args = ap.parse_args()

    methods = list(dict.fromkeys(["std-zero", *args.methods]))  # std-zero is the reference of every ratio
    params = SimParams(args.lilo_ratio, args.mopps_ratio, args.mopps_decay, args.adarft_eta)
    print(f"threads: OMP/OPENBLAS/MKL_NUM_THREADS=1; prompts={args.prompts}, batch={args.batch} groups, "
          f"budget={args.steps} uniform steps, eta={args.eta}, medians over {args.seeds} seeds; {params}")
    for g in [] if args.overhead_only else args.groups:
        simulate(args, g, params, methods)
    if args.no_overhead:
        return
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
