"""TaoSR1 dynamic sampling inside verl 0.9.1's V1 replay buffer.

Recipe (see ``docs/sampling.md`` for every key)::

    trainer:
      v1:
        sampler:
          custom_sampler:
            path: pkg://taosr1_verl.integrations.verl.replay_buffer   # or samplers/taosr1_sampler.py
            name: TaoSR1ReplayBuffer                                  # TaoSR1ReplayBufferAsync for async modes
          sampler_kwargs:
            train_batch_size: ${data.train_batch_size}
            gen_batch_size: 1          # must equal data.gen_batch_size (our trainer sets it for you)
            group_size: ${actor_rollout_ref.rollout.n}
            metric: acc
            gamma: null                # TaoSR1: keep 0 < correct < gamma (null: gamma = n)
            passn_path: null           # DPO stage pass@N parquet to seed the tracker

What changes against verl's built-in ``algorithm.filter_groups``:

- the keep rule is a :class:`~taosr1_verl.sampling.GroupRule` band (TaoSR1's ``0 < correct < gamma`` or a
  pass-rate band) instead of "metric not constant";
- every finished training group feeds a :class:`~taosr1_verl.sampling.DifficultyTracker` keyed by the row's
  dataset ``index`` (``extra_info.index``), which the :mod:`taosr1_verl.integrations.verl.trainer` dataloader
  uses to pick the next prompts;
- refills follow the observed keep rate (:class:`~taosr1_verl.sampling.RefillPlanner`) instead of 2 prompts
  per evicted group, so a good selection policy does not turn into discarded surplus (``refill: verl``
  restores verl's rule);
- the batch is chosen class-balanced (gold label level) among the sampleable groups;
- every step logs ``training/taosr1_sampler/*``: groups kept and evicted by reason, wasted-rollout fraction,
  pass-rate histogram, class mix and its CV.

verl's refill/drain/eviction machinery is reused as is; validation (``partition_id="val"``) is untouched.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import transfer_queue as tq
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

from taosr1_verl.sampling import KEPT, REASONS, DifficultyTracker, GroupRule, RefillPlanner, TrackerConfig
from taosr1_verl.sampling.tracker import UNKNOWN_LEVEL
from taosr1_verl.schema import get_schema

logger = logging.getLogger(__name__)

METRIC_PREFIX = "training/taosr1_sampler"
_RULE_KEYS = ("metric", "threshold", "gamma", "low", "high", "min_correct", "max_correct", "min_rate", "max_rate")
_TRACKER_KEYS = ("half_life", "prior_mean", "prior_strength", "seed_weight")


@dataclass(frozen=True)
class BufferOptions:
    """The non-rule ``sampler_kwargs`` of :class:`TaoSR1ReplayBuffer`."""

    train_batch_size: int | None = None
    """``data.train_batch_size`` (needed by the sync loop to bound in-flight prompts)."""
    gen_batch_size: int = 1
    """Must equal ``data.gen_batch_size``; refills are whole multiples of it."""
    max_inflight_gen_batches: int = 1
    """Most prompt batches pending or running at once (verl's sync bound)."""
    sync_refill_failed_groups: bool = False
    """Replace groups whose rollouts all failed (verl's option)."""
    group_size: int | None = None
    """Rollouts per prompt (``actor_rollout_ref.rollout.n``); used by the trainer's selection policy."""
    passn_path: str | None = None
    """pass@N parquet of the DPO stage used to seed the tracker."""
    refill: str = "planned"
    """``planned``: dispatch what the keep rate says is missing; ``verl``: 2 prompts per evicted group."""
    refill_margin: float = 0.1
    """Extra fraction dispatched by the planned refill."""
    balance_batch: bool = True
    """Choose the batch among sampleable groups round-robin over gold label levels."""
    schema: str = "taosr1"
    """Label schema used to read gold levels from ``reward_model.ground_truth``."""
    max_groups_per_step: int | None = None
    """Stop the run with an error once this many training groups finished in one step without filling the
    batch (None: no limit, verl's behaviour). A policy whose every group is constant (a model that cannot
    write the format, a reward that is always 0) otherwise rolls out forever: with 100-step SFT the demo's
    quick profile finished 240 groups to keep 8."""
    policy: dict[str, Any] | None = None
    """:class:`~taosr1_verl.sampling.PolicyConfig` fields for the ``taosr1_sync`` trainer's dataloader
    (``window``, ``skip_below``, ``recheck_prob``, ``temperature``, ``balance_classes``, ``seed``)."""

    def __post_init__(self) -> None:
        if self.refill not in ("planned", "verl"):
            raise ValueError(f"sampler_kwargs.refill must be 'planned' or 'verl', got {self.refill!r}")
        if self.gen_batch_size < 1:
            raise ValueError("sampler_kwargs.gen_batch_size must be >= 1")
        if self.max_groups_per_step is not None and self.max_groups_per_step < 1:
            raise ValueError(f"sampler_kwargs.max_groups_per_step must be >= 1 or null, got {self.max_groups_per_step}")


def parse_sampler_kwargs(sampler_kwargs: Any) -> tuple[GroupRule, TrackerConfig, BufferOptions]:
    """Split verl's free-form ``trainer.v1.sampler.sampler_kwargs`` into rule, tracker and buffer options.

    Example:
        >>> rule, tcfg, opts = parse_sampler_kwargs({"gamma": 6, "train_batch_size": 8, "half_life": 20})
        >>> rule.bounds(8), tcfg.half_life, opts.train_batch_size
        ((1, 5), 20.0, 8)
    """
    kw = dict(sampler_kwargs or {})
    rule = GroupRule.from_config({k: kw.pop(k) for k in _RULE_KEYS if k in kw})
    tracker_kw = {k: kw.pop(k) for k in _TRACKER_KEYS if k in kw}
    tracker_cfg = TrackerConfig(**{k: None if v is None else float(v) for k, v in tracker_kw.items()})
    known = set(BufferOptions.__dataclass_fields__)
    unknown = sorted(set(kw) - known)
    if unknown:
        raise ValueError(
            f"unknown trainer.v1.sampler.sampler_kwargs {unknown}; known: {sorted(known | set(_RULE_KEYS) | set(_TRACKER_KEYS))}"
        )
    if kw.get("policy") is not None:
        kw["policy"] = dict(kw["policy"])
    return rule, tracker_cfg, BufferOptions(**kw)


def _column(data: Any, name: str, n: int) -> list[Any]:
    """A TensorDict field as a Python list (tensors, non-tensor stacks and plain lists alike)."""
    try:
        value = data[name]
    except KeyError:
        return [None] * n
    out = value.tolist() if hasattr(value, "tolist") else list(value)
    return [getattr(v, "data", v) for v in out]


class _TaoSR1SamplingMixin:
    """Shared overrides of the sync and async replay buffers."""

    def _taosr1_setup(self, sampler_kwargs: Any) -> dict[str, Any]:
        rule, tracker_cfg, opts = parse_sampler_kwargs(sampler_kwargs)
        self.rule = rule
        self.options = opts
        self.tracker = DifficultyTracker(0, tracker_cfg)
        if opts.passn_path:
            self.tracker.seed_from_passn(opts.passn_path)
        self.planner = RefillPlanner(margin=opts.refill_margin)
        self._schema = get_schema(opts.schema)
        # uid -> (dataset index, gold level, correct, rollouts, outcome code), for finished training groups.
        self._group_info: dict[str, tuple[int, int, int, int, int]] = {}
        self._step_counts: Counter[str] = Counter()
        self._step_hist = np.zeros(10, dtype=np.int64)
        self._selected_levels: list[int] = []
        self._batch_size = 0
        self._last_sampleable = 0
        return {
            "filter_groups_metric": rule.metric,
            "train_batch_size": opts.train_batch_size,
            "gen_batch_size": opts.gen_batch_size,
            "max_inflight_gen_batches": opts.max_inflight_gen_batches,
            "sync_refill_failed_groups": opts.sync_refill_failed_groups,
        }

    # ---- gold level and metric of a stored trajectory -------------------------------------------
    def _gold_level(self, extra_info: Any, reward_model: Any) -> int:
        for source, key in ((extra_info, "level"), (reward_model, "ground_truth")):
            if isinstance(source, dict) and source.get(key) is not None:
                try:
                    return self._schema.normalize(source[key])
                except ValueError:
                    continue
        return UNKNOWN_LEVEL

    def _metric_value(self, extra_fields: Any) -> float | None:
        fields = getattr(extra_fields, "data", extra_fields)
        info = fields.get("reward_extra_info", {}) if isinstance(fields, dict) else {}
        if self.rule.metric not in info:
            return None
        try:
            return float(np.asarray(info[self.rule.metric], dtype=np.float64).reshape(-1)[0])
        except (TypeError, ValueError):
            return float("nan")  # untrusted value: counts as not correct

    # ---- the group rule (replaces verl's std == 0 test) -----------------------------------------
    def _dapo_filtered_keys(self, partition_id: str) -> tuple[set[str], Counter]:
        if partition_id == "val":
            return set(), Counter()
        finished = self.finished_keys[partition_id]
        cache = self._dapo_classification_cache[partition_id]
        for uid in cache.keys() - finished:
            del cache[uid]
        for uid in self._group_info.keys() - finished:
            del self._group_info[uid]
        new_uids = finished - cache.keys()
        keys = [k for k in self.partitions[partition_id] if k.split("_")[0] in new_uids]
        values: dict[str, list[float]] = defaultdict(list)
        first: dict[str, tuple[Any, Any, Any]] = {}
        missing: set[str] = new_uids - {k.split("_")[0] for k in keys}
        if keys:
            data = tq.kv_batch_get(
                keys=keys, partition_id=partition_id,
                select_fields=["extra_fields", "index", "extra_info", "reward_model"],
            )
            n = len(keys)
            cols = [_column(data, f, n) for f in ("extra_fields", "index", "extra_info", "reward_model")]
            for key, extra_fields, index, extra_info, reward_model in zip(keys, *cols, strict=True):
                uid = key.split("_")[0]
                v = self._metric_value(extra_fields)
                if v is None:
                    missing.add(uid)
                    continue
                values[uid].append(v)
                first.setdefault(uid, (index, extra_info, reward_model))
        if missing:
            raise RuntimeError(
                f"finished groups lack reward metric {self.rule.metric!r} in reward_extra_info "
                f"(e.g. {sorted(missing)[:5]}); the reward function must return it for every sample"
            )
        idx, corr, size, lvls = [], [], [], []
        for uid in sorted(values):
            vals = values[uid]
            index, extra_info, reward_model = first[uid]
            if index is None and isinstance(extra_info, dict):
                index = extra_info.get("index")
            c, n = self.rule.count_correct(vals), len(vals)
            code = int(self.rule.classify([c], [n])[0])
            level = self._gold_level(extra_info, reward_model)
            # The cache value is what verl's eviction reads: None = kept, else a number for its diagnostics.
            cache[uid] = None if code == KEPT else c / n
            self._group_info[uid] = (-1 if index is None else int(index), level, c, n, code)
            self._step_counts[REASONS[code]] += 1
            self._step_counts["rollouts"] += n
            self._step_hist[min(int(c / n * 10), 9)] += 1
            if index is not None and int(index) >= 0:
                idx.append(int(index))
                corr.append(c)
                size.append(n)
                lvls.append(level)
        if idx:
            self.tracker.update(idx, corr, size, levels=lvls)
        if values:
            kept = sum(1 for uid in values if cache[uid] is None)
            self.planner.observe(kept, len(values))
            self._check_group_budget()
        evicted = {uid: r for uid, r in cache.items() if r is not None}
        return set(evicted), Counter(evicted.values())

    def _check_group_budget(self) -> None:
        limit = self.options.max_groups_per_step
        c = self._step_counts
        finished = sum(c[r] for r in REASONS)
        if limit is None or finished < limit or c["kept"] >= (self._batch_size or self.options.train_batch_size or 0):
            return
        raise RuntimeError(
            f"TaoSR1 sampler: {finished} groups finished this step and only {c['kept']} were kept "
            f"({c['too_hard']} with too few correct rollouts, {c['too_easy']} with too many; "
            f"sampler_kwargs.max_groups_per_step={limit}). The policy's groups are constant: check that the "
            f"model writes the answer format and that the reward's {self.rule.metric!r} can be reached, or "
            "widen the keep rule (gamma / low / high)"
        )

    # ---- refill sized by the keep rate ----------------------------------------------------------
    def _sampleable_terminal_keys(self, partition_id: str, eviction_reasons: Any) -> set[str]:
        keys = super()._sampleable_terminal_keys(partition_id, eviction_reasons)
        if partition_id != "val":
            self._last_sampleable = len(keys)
        return keys

    def _planned_refill(self, count: int) -> int:
        """Called by verl with its 2-per-evicted count; dispatches what is predicted to be missing."""
        inflight = len(self.pending_keys["train"]) + len(self.running_keys["train"])
        target = self._batch_size or self.options.train_batch_size or count
        missing = target - self._last_sampleable - self.planner.keep_rate * inflight
        # Never fewer than would fill the batch if every in-flight group were kept: else verl could wait forever.
        cover = max(0, target - self._last_sampleable - inflight)
        want = max(self.planner.plan(missing, cap=count), cover)
        g = self.options.gen_batch_size
        want = min(count, max(g, math.ceil(want / g) * g))
        self._step_counts["refill_dispatched"] += want
        self._step_counts["refill_verl_would"] += count
        return self._verl_refill_fn(want)

    # ---- class-balanced batch -------------------------------------------------------------------
    def _select_prompt_uids(self, partition_id: str, sampleable_keys: set[str], batch_size: int):
        selected, partition_snapshot, steps_snapshot = super()._select_prompt_uids(
            partition_id, sampleable_keys, len(sampleable_keys)
        )
        if partition_id == "val" or not self.options.balance_batch or len(selected) <= batch_size:
            chosen = selected[:batch_size]
        else:
            # Round-robin over gold levels, oldest first within a level (verl's order).
            by_level: dict[int, list[str]] = defaultdict(list)
            for uid in selected:
                by_level[self._group_info.get(uid, (0, UNKNOWN_LEVEL))[1]].append(uid)
            rank = {uid: r for uids in by_level.values() for r, uid in enumerate(uids)}
            order = {uid: i for i, uid in enumerate(selected)}
            chosen = sorted(selected, key=lambda u: (rank[u], order[u]))[:batch_size]
        if partition_id != "val":
            self._selected_levels = [self._group_info.get(u, (0, UNKNOWN_LEVEL))[1] for u in chosen]
        return chosen, partition_snapshot, steps_snapshot

    # ---- per-step metrics -----------------------------------------------------------------------
    def _taosr1_metrics(self, batch_rollouts: int) -> dict[str, float]:
        c = self._step_counts
        groups = sum(c[r] for r in REASONS)
        m: dict[str, float] = {
            f"{METRIC_PREFIX}/groups_finished": groups,
            f"{METRIC_PREFIX}/groups_kept": c["kept"],
            f"{METRIC_PREFIX}/evicted/too_hard": c["too_hard"],
            f"{METRIC_PREFIX}/evicted/too_easy": c["too_easy"],
            f"{METRIC_PREFIX}/rollouts_finished": c["rollouts"],
            f"{METRIC_PREFIX}/rollouts_trained": batch_rollouts,
            f"{METRIC_PREFIX}/wasted_rollout_fraction": (
                max(0.0, 1.0 - batch_rollouts / c["rollouts"]) if c["rollouts"] else 0.0
            ),
            f"{METRIC_PREFIX}/keep_rate_estimate": self.planner.keep_rate,
            f"{METRIC_PREFIX}/refill/dispatched": c["refill_dispatched"],
            f"{METRIC_PREFIX}/refill/verl_would_dispatch": c["refill_verl_would"],
            # What the tracker knows so far; survives checkpoint + resume. Counters, not a table scan: O(batch).
            f"{METRIC_PREFIX}/tracker/groups_observed": self.tracker.groups_observed,
            f"{METRIC_PREFIX}/tracker/prompts_seen": self.tracker.prompts_seen,
        }
        for i, cnt in enumerate(self._step_hist):
            m[f"{METRIC_PREFIX}/pass_rate_hist/{i / 10:.1f}-{(i + 1) / 10:.1f}"] = int(cnt)
        levels = Counter(self._selected_levels)
        for lv in sorted({lv.level for lv in self._schema.levels} | set(levels), reverse=True):
            m[f"{METRIC_PREFIX}/class_mix/level_{lv}"] = levels.get(lv, 0)
        counts = np.array([levels.get(lv.level, 0) for lv in self._schema.levels], dtype=float)
        m[f"{METRIC_PREFIX}/class_mix_cv"] = float(counts.std() / counts.mean()) if counts.mean() > 0 else 0.0
        return m

    def _terminal_eviction_reasons(self, global_steps: int, partition_id: str):
        # Every path that classifies groups passes here (sample, and the async trainers' get_sampleable_count
        # and wait_for_sampleable), so the tracker ages evidence by the step it was gathered for.
        if partition_id != "val":
            self.tracker.set_step(global_steps)
        return super()._terminal_eviction_reasons(global_steps, partition_id)

    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        if partition_id == "val":
            return super().sample(global_steps, partition_id, batch_size)
        self._selected_levels = []
        self._batch_size = batch_size
        batch_meta, metrics = super().sample(global_steps, partition_id, batch_size)
        metrics.update(self._taosr1_metrics(len(batch_meta.keys)))
        # Reset after reporting, not before sampling: the async trainers classify groups between two samples
        # (get_sampleable_count, wait_for_sampleable), and those belong in the next report.
        self._step_counts = Counter()
        self._step_hist[:] = 0
        return batch_meta, metrics


class TaoSR1ReplayBuffer(_TaoSR1SamplingMixin, ReplayBuffer):
    """verl's sync V1 replay buffer with TaoSR1's group rule, tracker feedback and planned refills.

    Constructed by verl with ``trainer_mode, trainer_config, max_off_policy_threshold,
    max_off_policy_strategy, sampler_kwargs, refill_fn``; everything else comes from ``sampler_kwargs``
    (see :func:`parse_sampler_kwargs`). The tracker is ``self.tracker``.
    """

    def __init__(self, trainer_mode: str, trainer_config: Any, max_off_policy_threshold: int | None,
                 max_off_policy_strategy: str, sampler_kwargs: Any, refill_fn: Any = None,
                 poll_interval: float = 2.0) -> None:
        extra = self._taosr1_setup(sampler_kwargs)
        if extra["train_batch_size"] is None:
            raise ValueError("TaoSR1ReplayBuffer needs sampler_kwargs.train_batch_size: ${data.train_batch_size}")
        self._verl_refill_fn = refill_fn
        if refill_fn is not None and self.options.refill == "planned":
            refill_fn = self._planned_refill
        super().__init__(trainer_mode, trainer_config, max_off_policy_threshold, max_off_policy_strategy,
                         sampler_kwargs, poll_interval=poll_interval, refill_fn=refill_fn, **extra)


class TaoSR1ReplayBufferAsync(_TaoSR1SamplingMixin, ReplayBufferAsync):
    """The async (``colocate_async``/``separate_async``) variant: same rule, tracker and metrics; verl's
    async loop refills exactly one prompt per evicted group, so no planned refill is needed, and kept groups
    beyond the batch stay buffered for the next step. Groups that finish while the trainer polls
    (``get_sampleable_count``, ``wait_for_sampleable``) are counted in the next ``sample``'s metrics."""

    def __init__(self, trainer_mode: str, trainer_config: Any, max_off_policy_threshold: int | None,
                 max_off_policy_strategy: str, sampler_kwargs: Any, refill_fn: Any = None,
                 poll_interval: float = 2.0) -> None:
        extra = self._taosr1_setup(sampler_kwargs)
        self._verl_refill_fn = refill_fn
        super().__init__(trainer_mode, trainer_config, max_off_policy_threshold, max_off_policy_strategy,
                         sampler_kwargs, poll_interval=poll_interval, refill_fn=refill_fn, **extra)
