"""Which prompts to roll out next: difficulty-aware, class-balanced, seeded.

For each batch slot the policy looks at ``window`` candidates taken in order from a per-class shuffled
stream of the dataset (so every prompt is considered once per pass over its class) and:

1. scores each candidate by the probability that its next group of ``G`` rollouts is kept by the
   :class:`~taosr1_verl.sampling.group_rule.GroupRule`, under the tracker's Beta belief (beta-binomial mass
   of the band). Prompts near the middle of the band score highest; a never-seen prompt scores what the
   prior gives; uncertainty (few or old observations) pulls a score toward the prior; a prompt trained on
   since its evidence was gathered is scored as ``learn_shift`` log-odds easier per training (training is
   what makes it easier, and re-selected prompts otherwise roll out all-correct groups);
2. skips candidates confidently outside the band (score ``< skip_below``), except a ``recheck_prob``
   fraction of them, which are rolled out anyway because the model changes;
3. draws the batch among the rest with probability proportional to the score (``temperature=1``, by
   Gumbel-top-k without replacement) or greedily (``temperature=0``). The ranking score is the keep
   probability itself (``score="keep"``), or with ``score="learnability"`` the expected learnability
   ``p(1-p)`` of a kept group (LILO's measure of how much a group teaches), which among prompts that are all
   likely kept prefers those nearest a pass rate of one half;
4. gives every gold label class the same share of the batch (``balance_classes``), so rare classes are
   visited more often: TaoSR1 found class-balanced RL data (CV of class counts = 0) trains best.

All randomness comes from ``seed``; :meth:`SelectionPolicy.state_dict` captures it, so a resumed run draws
the same prompts. Pure numpy.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from taosr1_verl.sampling.group_rule import GroupRule
from taosr1_verl.sampling.tracker import UNKNOWN_LEVEL, DifficultyTracker

SCORES: tuple[str, ...] = ("keep", "learnability")
"""Ranking scores of :class:`PolicyConfig` ``score``."""


@dataclass(frozen=True)
class PolicyConfig:
    """Knobs of :class:`SelectionPolicy`."""

    group_size: int = 8
    """Rollouts per prompt (GRPO's ``G``, verl's ``actor_rollout_ref.rollout.n``)."""
    window: float = 4.0
    """Candidates examined per batch slot; larger = choosier, but passes over the data faster."""
    skip_below: float = 0.2
    """Candidates whose keep probability is below this are skipped for this pass over the data..."""
    recheck_prob: float = 0.05
    """...except this fraction of them, which are rolled out anyway to re-check them."""
    temperature: float = 0.0
    """0: take the highest keep probabilities; 1: draw proportionally to them (keeps variety)."""
    balance_classes: bool = True
    """Give every gold label level an equal share of each batch."""
    learn_shift: float = 0.2
    """Log-odds by which one GRPO training on a prompt (a group with ``0 < correct < G``) is assumed to raise
    its pass rate. Scores use the tracker's belief moved up by ``learn_shift`` per training that came after
    its evidence, so a prompt trained on again and again is seen becoming too easy before it rolls out all
    correct. 0 turns this off."""
    score: str = "keep"
    """How the candidates that are not skipped are ranked: ``keep``, the probability that the next group is
    kept; ``learnability``, the expected ``p(1-p)`` of the next group counted only when it is kept
    (:meth:`SelectionPolicy.learnability`), which favours pass rates near one half among likely-kept prompts.
    Skipping always uses the keep probability."""
    max_windows: int = 8
    """Extra windows drawn for a class when too many candidates are skipped, before falling back to the
    best skipped ones."""
    seed: int = 0
    """Seed of every random choice."""

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"PolicyConfig.group_size must be >= 1, got {self.group_size}")
        if not self.window >= 1.0:
            raise ValueError(f"PolicyConfig.window must be >= 1, got {self.window}")
        if not 0.0 <= self.skip_below <= 1.0 or not 0.0 <= self.recheck_prob <= 1.0:
            raise ValueError("PolicyConfig.skip_below and recheck_prob must be in [0, 1]")
        if self.temperature < 0:
            raise ValueError(f"PolicyConfig.temperature must be >= 0, got {self.temperature}")
        if not math.isfinite(self.learn_shift):
            raise ValueError(f"PolicyConfig.learn_shift must be finite, got {self.learn_shift}")
        if self.score not in SCORES:
            raise ValueError(f"PolicyConfig.score must be one of {SCORES}, got {self.score!r}")
        if self.max_windows < 1:
            raise ValueError(f"PolicyConfig.max_windows must be >= 1, got {self.max_windows}")


@dataclass
class PolicyStats:
    """Running counts of what the policy did (cumulative; diff two snapshots for one step)."""

    selected: int = 0
    considered: int = 0
    skipped: int = 0
    rechecked: int = 0
    fallback: int = 0
    by_level: dict[int, int] = field(default_factory=dict)


class SelectionPolicy:
    """Chooses dataset positions to roll out next.

    Args:
        tracker: the difficulty beliefs, keyed by ``keys[position]``.
        rule: the group rule the trainer applies (its band defines "informative").
        config: see :class:`PolicyConfig`.
        keys: tracker key (``extra_info.index``) of each dataset position; default ``arange(size)``.
        levels: gold label level of each position for class balance; default: what the tracker holds
            (``-1`` = unknown, one class of its own).
        size: dataset size when neither ``keys`` nor ``levels`` is given.

    Example:
        >>> t = DifficultyTracker(6)
        >>> t.update([0, 1, 2], correct=64, n=64)  # three prompts that never fail
        >>> p = SelectionPolicy(t, GroupRule(), PolicyConfig(window=2.0, recheck_prob=0.0, seed=1), size=6)
        >>> sorted(p.select(3).tolist())
        [3, 4, 5]
    """

    def __init__(
        self,
        tracker: DifficultyTracker,
        rule: GroupRule | None = None,
        config: PolicyConfig | None = None,
        keys: Any = None,
        levels: Any = None,
        size: int | None = None,
    ) -> None:
        self.tracker = tracker
        self.rule = rule or GroupRule()
        self.config = config or PolicyConfig()
        if keys is None:
            n = size if size is not None else (len(levels) if levels is not None else len(tracker))
            keys = np.arange(n, dtype=np.int64)
        self.keys = np.asarray(keys, dtype=np.int64).reshape(-1)
        if self.keys.size == 0:
            raise ValueError("SelectionPolicy: empty dataset")
        tracker.ensure_size(int(self.keys.max()) + 1)
        if levels is not None:
            levels = np.asarray(levels, dtype=np.int64).reshape(-1)
            if levels.shape != self.keys.shape:
                raise ValueError(f"SelectionPolicy: {levels.size} levels for {self.keys.size} positions")
            tracker.set_levels(self.keys, levels)
        else:
            levels = tracker.level[self.keys].astype(np.int64)
        self.levels = levels
        pos_dtype = np.int32 if self.keys.size < 2**31 else np.int64
        if self.config.balance_classes:
            self.class_levels = sorted({int(v) for v in np.unique(levels)}, reverse=True)
            self._members = [np.flatnonzero(levels == lv).astype(pos_dtype) for lv in self.class_levels]
        else:
            self.class_levels = [UNKNOWN_LEVEL]
            self._members = [np.arange(self.keys.size, dtype=pos_dtype)]
        k = len(self._members)
        self._epoch = [0] * k
        self._cursor = [0] * k
        self._perm_cache: dict[int, tuple[int, np.ndarray]] = {}
        self._rng = np.random.Generator(np.random.PCG64(self.config.seed))
        self.stats = PolicyStats()

    def __len__(self) -> int:
        return int(self.keys.size)

    # ---- streams -------------------------------------------------------------------------------
    def _perm(self, k: int) -> np.ndarray:
        epoch = self._epoch[k]
        cached = self._perm_cache.get(k)
        if cached is None or cached[0] != epoch:
            # A fresh generator per (class, epoch): the order does not depend on how much was consumed.
            rng = np.random.default_rng([self.config.seed, k, epoch])
            cached = (epoch, rng.permutation(self._members[k]))
            self._perm_cache[k] = cached
        return cached[1]

    def _draw(self, k: int, m: int) -> np.ndarray:
        parts = []
        while m > 0:
            perm = self._perm(k)
            take = perm[self._cursor[k] : self._cursor[k] + m]
            parts.append(take)
            m -= take.size
            self._cursor[k] += take.size
            if self._cursor[k] >= perm.size:
                self._epoch[k] += 1
                self._cursor[k] = 0
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    # ---- selection -----------------------------------------------------------------------------
    def keep_probability(self, positions: Any) -> np.ndarray:
        """Probability that the next group of each position is kept, under the current beliefs."""
        return self._scores(positions, learnability=False)[0]

    def learnability(self, positions: Any) -> np.ndarray:
        """Expected learnability of each position's next group, ``E[4 p (1-p) * kept]`` under the current
        beliefs: 1 only for a pass rate known to be one half, 0 for a group that cannot be kept.

        A Beta(a, b) density times ``p (1-p)`` is ``E[p (1-p)]`` times the Beta(a+1, b+1) density, so this is
        ``4ab / ((a+b)(a+b+1))`` times the keep probability under Beta(a+1, b+1).
        """
        return self._scores(positions, learnability=True)[1]

    def _scores(self, positions: Any, learnability: bool) -> tuple[np.ndarray, np.ndarray]:
        """(keep probability, ranking score) of each position; the ranking score is the keep probability
        itself (the same array) unless ``learnability``."""
        keys = self.keys[np.asarray(positions, dtype=np.int64)]
        # Scored once per distinct belief: most candidates share one (never seen, or seeded with the same
        # pass@N count), and the beta-binomial mass is the bulk of a step's cost.
        rep, inverse = self.tracker.same_beliefs(keys)
        a, b = self.tracker.beta(rep, learn_shift=self.config.learn_shift)
        n = self.config.group_size
        q = self.rule.keep_probability(n, a, b)[inverse]
        if not learnability:
            return q, q
        s = a + b
        r = 4.0 * a * b / (s * (s + 1.0)) * self.rule.keep_probability(n, a + 1.0, b + 1.0)
        return q, r[inverse]

    def _ranked(self, positions: Any) -> tuple[np.ndarray, np.ndarray]:
        return self._scores(positions, learnability=self.config.score == "learnability")

    def _top(self, q: np.ndarray, m: int) -> np.ndarray:
        if m >= q.size:
            return np.arange(q.size)
        t = self.config.temperature
        if t == 0:
            # Candidates arrive in shuffled order already, so ties need no extra noise.
            return np.argpartition(-q, m - 1)[:m]
        score = np.log(np.maximum(q, 1e-12)) / t + self._rng.gumbel(size=q.size)
        return np.argpartition(-score, m - 1)[:m]

    def _window(self, k: int, need: int) -> np.ndarray:
        return self._draw(k, max(1, math.ceil(self.config.window * need)))

    def _select_class(self, k: int, quota: int, cand: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Pick ``quota`` positions of class ``k``, starting from its first window ``cand`` with keep
        probabilities ``q`` and ranking scores ``r``."""
        cfg, st = self.config, self.stats
        chosen: list[np.ndarray] = []
        skipped_pos: list[np.ndarray] = []
        skipped_q: list[np.ndarray] = []
        need = quota
        for w in range(cfg.max_windows):
            if w:
                cand = self._window(k, need)
                q, r = self._ranked(cand)
            low = q < cfg.skip_below
            recheck = low & (self._rng.random(cand.size) < cfg.recheck_prob)
            forced = cand[recheck][:need]
            chosen.append(forced)
            need -= forced.size
            st.rechecked += int(forced.size)
            pool, pool_r = cand[~low], r[~low]
            pick = self._top(pool_r, need) if need > 0 else np.zeros(0, dtype=np.int64)
            chosen.append(pool[pick])
            need -= pick.size
            st.considered += int(cand.size)
            drop = low & ~recheck
            st.skipped += int(drop.sum())
            skipped_pos.append(cand[drop])
            skipped_q.append(q[drop])
            if need == 0:
                break
        if need > 0:
            # The class is (believed) almost all outside the band: take its most promising skipped prompts.
            pos = np.concatenate(skipped_pos)
            qs = np.concatenate(skipped_q)
            order = np.argsort(-qs, kind="stable")[:need]
            chosen.append(pos[order])
            need -= order.size
            st.fallback += int(order.size)
            if need > 0:
                chosen.append(self._draw(k, need))
        return np.concatenate(chosen).astype(np.int64)

    def select(self, batch_size: int) -> np.ndarray:
        """Dataset positions of the next ``batch_size`` prompts to roll out, in random order."""
        if batch_size < 1:
            raise ValueError(f"SelectionPolicy.select: batch_size must be >= 1, got {batch_size}")
        k = len(self._members)
        quotas = np.full(k, batch_size // k, dtype=np.int64)
        # The remainder goes to randomly chosen classes so no class is favoured over many batches.
        quotas[self._rng.permutation(k)[: batch_size % k]] += 1
        active = [i for i, qk in enumerate(quotas) if qk > 0]
        # Every class's first window is scored in one call (fewer, larger numpy operations). The class
        # streams are independent and scoring draws no random numbers, so the choices are unchanged.
        cands = [self._window(i, int(quotas[i])) for i in active]
        cuts = np.cumsum([c.size for c in cands[:-1]])
        q_all, r_all = self._ranked(np.concatenate(cands))
        qs = np.split(q_all, cuts)
        rs = qs if r_all is q_all else np.split(r_all, cuts)
        parts = [
            self._select_class(i, int(quotas[i]), c, q, r)
            for i, c, q, r in zip(active, cands, qs, rs, strict=True)
        ]
        out = np.concatenate(parts)
        out = out[self._rng.permutation(out.size)]
        self.stats.selected += int(out.size)
        counts = np.bincount(self.levels[out] + 1)  # levels start at -1 (unknown)
        for lv in np.flatnonzero(counts):
            self.stats.by_level[int(lv) - 1] = self.stats.by_level.get(int(lv) - 1, 0) + int(counts[lv])
        return out

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Stream positions, RNG state and stats (JSON-able; the tracker is saved separately)."""
        return {
            "epoch": list(self._epoch),
            "cursor": list(self._cursor),
            "rng": json.dumps(self._rng.bit_generator.state),
            "class_levels": list(self.class_levels),
            "config": json.dumps(asdict(self.config)),
            "stats": json.dumps(asdict(self.stats)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` of a policy over the same dataset and config."""
        if list(state["class_levels"]) != list(self.class_levels):
            raise ValueError(
                f"SelectionPolicy state is for classes {list(state['class_levels'])}, this dataset has "
                f"{self.class_levels}"
            )
        saved_cfg = json.loads(state["config"])
        if saved_cfg != asdict(self.config):
            raise ValueError(f"SelectionPolicy state was saved with config {saved_cfg}, not {asdict(self.config)}")
        self._epoch = [int(x) for x in state["epoch"]]
        self._cursor = [int(x) for x in state["cursor"]]
        self._rng.bit_generator.state = json.loads(state["rng"])
        stats = json.loads(state["stats"])
        stats["by_level"] = {int(k): int(v) for k, v in stats["by_level"].items()}
        self.stats = PolicyStats(**stats)
        self._perm_cache.clear()


@dataclass
class RefillPlanner:
    """How many prompts to dispatch to replace evicted groups.

    verl's sync loop dispatches 2 prompts per evicted group, then discards whatever is kept beyond the
    batch. With a selection policy that makes most groups informative that overshoots: the surplus becomes
    waste. The planner dispatches what the observed keep rate says is missing, plus a margin, never less
    than one prompt (so the loop always makes progress).

    Example:
        >>> planner = RefillPlanner(keep_rate=0.8, margin=0.1)
        >>> planner.plan(missing=40, cap=256)  # ceil(40 / 0.8 * 1.1)
        55
    """

    keep_rate: float = 0.5
    """Current estimate of the fraction of dispatched prompts whose group is kept."""
    margin: float = 0.1
    """Extra fraction dispatched to avoid another refill round."""
    smoothing: float = 0.2
    """Weight of the newest observation in the keep-rate moving average."""
    floor: float = 0.05
    """Lowest keep rate assumed (bounds the dispatch when almost nothing is kept)."""

    def observe(self, kept: int, total: int) -> None:
        """Feed the outcome of ``total`` finished groups, ``kept`` of them kept."""
        if total > 0:
            rate = kept / total
            self.keep_rate += self.smoothing * (rate - self.keep_rate)

    def plan(self, missing: float, cap: int) -> int:
        """Prompts to dispatch for ``missing`` more kept groups, at most ``cap`` and at least 1."""
        rate = max(self.keep_rate, self.floor)
        want = math.ceil(max(missing, 0.0) / rate * (1.0 + self.margin) - 1e-9)
        return int(max(1, min(cap, want)))

    def dispatch(self, count: int, target: int, sampleable: int, inflight: int, granularity: int = 1) -> int:
        """Prompts to dispatch where verl's sync loop would dispatch ``count``: what the keep rate says is
        missing for ``target`` kept groups, given ``sampleable`` kept already and ``inflight`` still rolling
        out. Never fewer than would fill the batch if every in-flight group were kept (else verl could wait
        forever on groups it believes are coming), never more than ``count``; whole multiples of
        ``granularity`` (the dataloader's fetch size), at least one.

        Example:
            >>> RefillPlanner(keep_rate=0.8, margin=0.0).dispatch(count=16, target=8, sampleable=2, inflight=0)
            8
            >>> RefillPlanner(keep_rate=0.8).dispatch(count=16, target=8, sampleable=2, inflight=4, granularity=4)
            4
        """
        missing = target - sampleable - self.keep_rate * inflight
        cover = max(0, target - sampleable - inflight)
        want = max(self.plan(missing, cap=count), cover)
        return int(min(count, max(granularity, math.ceil(want / granularity) * granularity)))
