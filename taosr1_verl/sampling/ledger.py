"""The accounting of a replay buffer's finished GRPO groups, in plain numpy.

A replay buffer fetches each newly finished group's per-rollout metric values, dataset index and gold level
(in verl: :mod:`taosr1_verl.integrations.verl.replay_buffer`, from TransferQueue) and hands them to a
:class:`GroupLedger`, which

- classifies every group under the :class:`~taosr1_verl.sampling.group_rule.GroupRule` (a band on the correct
  count, or verl's std-zero rule on the raw values) and says what verl's eviction reads for it;
- feeds the :class:`~taosr1_verl.sampling.tracker.DifficultyTracker` (groups with a dataset index) and the
  :class:`~taosr1_verl.sampling.policy.RefillPlanner`'s keep rate;
- remembers each group as a :class:`GroupRecord` while it waits in the buffer (the class-balanced batch
  choice reads its gold level);
- tallies the step for its metrics, and stops a step that finished too many groups without filling the
  batch (a policy whose every group is constant would otherwise roll out forever).

Nothing here knows about verl, Ray or TransferQueue, so all of it is tested without them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from taosr1_verl.sampling.group_rule import KEPT, REASONS, GroupRule
from taosr1_verl.sampling.policy import RefillPlanner
from taosr1_verl.sampling.tracker import UNKNOWN_LEVEL, DifficultyTracker

logger = logging.getLogger(__name__)

HIST_BINS = 10
"""Bins of the per-step pass-rate histogram (``pass_rate_hist/0.0-0.1`` ...)."""


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """One finished group as the ledger classified it."""

    index: int
    """Dataset index (``extra_info.index``); -1 when the row carried none (then the tracker never sees it)."""
    level: int
    """Gold label level; ``UNKNOWN_LEVEL`` when unreadable."""
    correct: int
    """Rollouts whose metric is ``>= threshold``."""
    rollouts: int
    outcome: int
    """:data:`~taosr1_verl.sampling.group_rule.KEPT`, ``TOO_HARD`` or ``TOO_EASY``."""
    filtered_value: float | None
    """``None`` when kept; else the value verl's filtered-reward breakdown counts it under (see
    :meth:`~taosr1_verl.sampling.group_rule.GroupOutcomes.filtered_values`)."""


class GroupBudgetExceeded(RuntimeError):
    """A step finished ``max_groups_per_step`` groups without keeping enough to fill the batch."""


@dataclass
class StepTally:
    """What happened since the last report (one training step, plus groups classified while the async
    trainers polled between two samples)."""

    outcomes: np.ndarray = field(default_factory=lambda: np.zeros(len(REASONS), dtype=np.int64))
    """Groups finished, by outcome code."""
    rollouts: int = 0
    """Rollouts of those groups."""
    without_index: int = 0
    """Groups whose rows carried no dataset index (classified, not tracked)."""
    refill_dispatched: int = 0
    refill_verl_would: int = 0
    pass_rate_hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, dtype=np.int64))
    selected_levels: list[int] = field(default_factory=list)
    """Gold levels of the groups chosen for the batch."""

    @property
    def finished(self) -> int:
        return int(self.outcomes.sum())

    @property
    def kept(self) -> int:
        return int(self.outcomes[KEPT])


class GroupLedger:
    """Classifies finished groups, feeds the tracker and planner, and keeps the step's accounts.

    Args:
        rule: the keep rule (its ``kind``, band and threshold).
        tracker: per-prompt beliefs updated with every group that has a dataset index.
        planner: keep-rate estimate for refills (shared by the ledgers of one buffer); a fresh one if None.
        class_levels: the schema's gold levels, reported in ``class_mix/level_<L>`` even when absent.
        max_groups_per_step: see :meth:`check_budget`; None: no limit (verl's behaviour).

    Example:
        >>> ledger = GroupLedger(GroupRule(), DifficultyTracker(4), class_levels=(1, 2))
        >>> ledger.add(["a", "b", "c"], [[1, 1], [0, 1], [0]], indices=[0, 1, None], levels=[2, 1, -1])
        [1.0, None, None]
        >>> ledger.tally.finished, ledger.tally.kept, ledger.tally.without_index, ledger.records["b"].correct
        (3, 2, 1, 1)
    """

    def __init__(
        self,
        rule: GroupRule,
        tracker: DifficultyTracker,
        planner: RefillPlanner | None = None,
        class_levels: Sequence[int] = (),
        max_groups_per_step: int | None = None,
    ) -> None:
        if max_groups_per_step is not None and max_groups_per_step < 1:
            raise ValueError(f"max_groups_per_step must be >= 1 or None, got {max_groups_per_step}")
        self.rule = rule
        self.tracker = tracker
        self.planner = planner or RefillPlanner()
        self.class_levels = tuple(sorted({int(lv) for lv in class_levels}, reverse=True))
        self.max_groups_per_step = max_groups_per_step
        self.records: dict[str, GroupRecord] = {}
        self.tally = StepTally()
        self._warned_nonbinary = False

    # ---- groups in -----------------------------------------------------------------------------
    def add(
        self,
        uids: Sequence[str],
        values: Sequence[Sequence[float]],
        indices: Sequence[int | None],
        levels: Sequence[int],
    ) -> list[float | None]:
        """Classify newly finished groups (``values[i]``: the per-rollout metric values of group ``uids[i]``),
        update the tracker, planner and tally, and return what verl's classification cache holds for each:
        ``None`` for a kept group, else its filtered value."""
        if not len(uids) == len(values) == len(indices) == len(levels):
            raise ValueError(f"GroupLedger.add: {len(uids)} uids, {len(values)} value lists, {len(indices)} "
                             f"indices and {len(levels)} levels")
        if not uids:
            return []
        sizes = [len(v) for v in values]
        flat = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in values])
        out = self.rule.classify_values(flat, sizes)
        self._warn_if_nonbinary(flat)
        filtered = out.filtered_values()
        idx = np.array([-1 if i is None or int(i) < 0 else int(i) for i in indices], dtype=np.int64)
        lv = np.asarray(levels, dtype=np.int64).reshape(-1)
        for uid, i, level, c, n, code, value in zip(uids, idx.tolist(), lv.tolist(), out.correct.tolist(),
                                                   out.sizes.tolist(), out.codes.tolist(), filtered, strict=True):
            self.records[uid] = GroupRecord(i, level, c, n, code, value)
        t = self.tally
        t.outcomes += np.bincount(out.codes, minlength=len(REASONS))
        t.rollouts += int(out.sizes.sum())
        bins = np.minimum((out.correct * HIST_BINS) // out.sizes, HIST_BINS - 1)
        t.pass_rate_hist += np.bincount(bins, minlength=HIST_BINS)
        tracked = idx >= 0
        t.without_index += int((~tracked).sum())
        if tracked.any():
            self.tracker.update(idx[tracked], out.correct[tracked], out.sizes[tracked], levels=lv[tracked])
        self.planner.observe(int((out.codes == KEPT).sum()), len(uids))
        return filtered

    def _warn_if_nonbinary(self, values: np.ndarray) -> None:
        if self.rule.kind != "band" or self._warned_nonbinary:
            return
        odd = values[(values != 0.0) & (values != 1.0)]
        if odd.size:
            self._warned_nonbinary = True
            logger.warning(
                "group rule: metric %r has values other than 0 and 1 (e.g. %s); the band rule counts a rollout "
                "correct when its value is >= threshold %s. For verl's rule on the raw values set "
                "sampler_kwargs.rule: std_zero", self.rule.metric, float(odd[0]), self.rule.threshold)

    def retain(self, live: Collection[str]) -> None:
        """Forget groups that left the buffer (trained on, evicted or discarded)."""
        for uid in self.records.keys() - set(live):
            del self.records[uid]

    def level_of(self, uid: str) -> int:
        record = self.records.get(uid)
        return UNKNOWN_LEVEL if record is None else record.level

    # ---- decisions -----------------------------------------------------------------------------
    def balanced(self, ordered: Sequence[str], batch_size: int, balance: bool = True) -> list[str]:
        """The batch among ``ordered`` sampleable groups (verl's order: oldest first): round-robin over gold
        levels when ``balance``, keeping that order within a level; records the batch's levels."""
        if not balance or len(ordered) <= batch_size:
            chosen = list(ordered[:batch_size])
        else:
            seen: Counter[int] = Counter()
            rank = []
            for pos, uid in enumerate(ordered):
                level = self.level_of(uid)
                rank.append((seen[level], pos))
                seen[level] += 1
            chosen = [ordered[pos] for _, pos in sorted(rank)[:batch_size]]
        self.tally.selected_levels = [self.level_of(u) for u in chosen]
        return chosen

    def plan_refill(self, count: int, target: int, sampleable: int, inflight: int, granularity: int = 1) -> int:
        """Prompts to dispatch where verl would dispatch ``count`` (see :meth:`RefillPlanner.dispatch`)."""
        want = self.planner.dispatch(count, target, sampleable, inflight, granularity)
        self.tally.refill_dispatched += want
        self.tally.refill_verl_would += count
        return want

    def check_budget(self, batch_size: int) -> None:
        """Raise :class:`GroupBudgetExceeded` once ``max_groups_per_step`` groups finished this step while
        fewer than ``batch_size`` were kept."""
        limit, t = self.max_groups_per_step, self.tally
        if limit is None or t.finished < limit or t.kept >= batch_size:
            return
        too_hard, too_easy = int(t.outcomes[REASONS.index("too_hard")]), int(t.outcomes[REASONS.index("too_easy")])
        raise GroupBudgetExceeded(
            f"TaoSR1 sampler: {t.finished} groups finished this step and only {t.kept} were kept "
            f"({too_hard} with too few correct rollouts, {too_easy} with too many; "
            f"sampler_kwargs.max_groups_per_step={limit}). The policy's groups are constant: check that the "
            f"model writes the answer format and that the reward's {self.rule.metric!r} can be reached, or "
            "widen the keep rule (gamma / low / high)"
        )

    # ---- report --------------------------------------------------------------------------------
    def metrics(self, batch_rollouts: int) -> dict[str, float]:
        """The step's metrics (names relative to the buffer's prefix), ``batch_rollouts`` trained."""
        t = self.tally
        m: dict[str, float] = {
            "groups_finished": t.finished,
            "groups_kept": t.kept,
            "evicted/too_hard": int(t.outcomes[REASONS.index("too_hard")]),
            "evicted/too_easy": int(t.outcomes[REASONS.index("too_easy")]),
            "groups_without_index": t.without_index,
            "rollouts_finished": t.rollouts,
            "rollouts_trained": batch_rollouts,
            "wasted_rollout_fraction": max(0.0, 1.0 - batch_rollouts / t.rollouts) if t.rollouts else 0.0,
            "keep_rate_estimate": self.planner.keep_rate,
            "refill/dispatched": t.refill_dispatched,
            "refill/verl_would_dispatch": t.refill_verl_would,
            # Which rule ran: 1 = verl's std-zero on the raw values, 0 = the band on values >= threshold.
            "rule/std_zero": float(self.rule.kind == "std_zero"),
            "rule/threshold": self.rule.threshold,
            # What the tracker knows so far; survives checkpoint + resume. Counters, not a table scan: O(batch).
            "tracker/groups_observed": self.tracker.groups_observed,
            "tracker/prompts_seen": self.tracker.prompts_seen,
        }
        for i, cnt in enumerate(t.pass_rate_hist.tolist()):
            m[f"pass_rate_hist/{i / HIST_BINS:.1f}-{(i + 1) / HIST_BINS:.1f}"] = cnt
        levels = Counter(t.selected_levels)
        for lv in sorted(set(self.class_levels) | set(levels), reverse=True):
            m[f"class_mix/level_{lv}"] = levels.get(lv, 0)
        counts = np.array([levels.get(lv, 0) for lv in self.class_levels], dtype=float)
        m["class_mix_cv"] = float(counts.std() / counts.mean()) if counts.size and counts.mean() > 0 else 0.0
        return m

    def end_step(self) -> None:
        """Start a new tally (after reporting, not before sampling: the async trainers classify groups
        between two samples, and those belong in the next report)."""
        self.tally = StepTally()
