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
            metric: acc                # a reward_extra_info key, or `reward` (the summed rm_scores, as verl)
            rule: band                 # or std_zero: verl's rule on the raw values
            threshold: 0.5             # a rollout is correct when metric >= threshold
            gamma: null                # TaoSR1: keep 0 < correct < gamma (null: gamma = n)
            passn_path: null           # DPO stage pass@N parquet to seed the tracker

What changes against verl's built-in ``algorithm.filter_groups``:

- the keep rule is a :class:`~taosr1_verl.sampling.GroupRule` band (TaoSR1's ``0 < correct < gamma`` or a
  pass-rate band) on the count of rollouts whose metric is ``>= threshold``; ``rule: std_zero`` is verl's own
  rule on the raw values (equal to the default band on a 0/1 metric). Either way a group of one rollout is
  kept, as verl keeps it;
- every finished training group feeds a :class:`~taosr1_verl.sampling.DifficultyTracker` keyed by the row's
  dataset ``index`` (``extra_info.index``), which the :mod:`taosr1_verl.integrations.verl.trainer` dataloader
  uses to pick the next prompts;
- refills follow the observed keep rate (:class:`~taosr1_verl.sampling.RefillPlanner`) instead of 2 prompts
  per evicted group, so a good selection policy does not turn into discarded surplus (``refill: verl``
  restores verl's rule);
- the batch is chosen class-balanced (gold label level) among the sampleable groups;
- every step logs ``<training|validation>/taosr1_sampler/*`` (verl's prefix of the partition): groups kept and
  evicted by reason, wasted-rollout fraction, pass-rate histogram, class mix and its CV, which rule ran.

The accounting (classification, tracker and planner feedback, tallies, the group budget) is
:class:`~taosr1_verl.sampling.GroupLedger`, plain numpy; this module only fetches from TransferQueue and
hands over, in the few private verl methods the mixin overrides. verl's refill/drain/eviction machinery is
reused as is; validation (``partition_id="val"``) is untouched. Built with verl's own constructor keywords
(``filter_groups_metric`` and the batch sizes), the buffer takes them as the matching ``sampler_kwargs``;
``filter_groups_metric=None`` (or ``metric: null``) turns the group filter off, as in verl.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import transfer_queue as tq
from verl.trainer.ppo.v1.replay_buffer import FILTER_GROUPS_REWARD_METRIC, ReplayBuffer, ReplayBufferAsync

from taosr1_verl import rl_rows
from taosr1_verl.sampling import DifficultyTracker, GroupLedger, GroupRule, RefillPlanner, TrackerConfig
from taosr1_verl.schema import get_schema

logger = logging.getLogger(__name__)

METRIC_GROUP = "taosr1_sampler"
"""Metrics are logged as ``<verl's partition prefix>/taosr1_sampler/<name>`` (``training/...`` for "train")."""
_RULE_KEYS = ("metric", "rule", "threshold", "gamma", "low", "high", "min_correct", "max_correct", "min_rate",
              "max_rate")
_TRACKER_KEYS = ("half_life", "prior_mean", "prior_strength", "seed_weight")
# verl's ReplayBuffer constructor keywords and the sampler_kwargs they stand for.
_VERL_KWARGS = {"filter_groups_metric": "metric", "train_batch_size": "train_batch_size",
                "gen_batch_size": "gen_batch_size", "max_inflight_gen_batches": "max_inflight_gen_batches",
                "sync_refill_failed_groups": "sync_refill_failed_groups"}
_UNSET: Any = object()


@dataclass(frozen=True)
class BufferOptions:
    """The non-rule ``sampler_kwargs`` of :class:`TaoSR1ReplayBuffer`."""

    train_batch_size: int | None = None
    """``data.train_batch_size`` (needed by the sync loop to bound in-flight prompts while it filters)."""
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
    write the format, a reward that is always 0) otherwise rolls out forever."""
    policy: dict[str, Any] | None = None
    """:class:`~taosr1_verl.sampling.PolicyConfig` fields for the ``taosr1_sync`` trainer's dataloader
    (``window``, ``skip_below``, ``recheck_prob``, ``temperature``, ``balance_classes``, ``seed``)."""

    def __post_init__(self) -> None:
        if self.refill not in ("planned", "verl"):
            raise ValueError(f"sampler_kwargs.refill must be 'planned' or 'verl', got {self.refill!r}")
        if self.gen_batch_size is None or self.gen_batch_size < 1:
            raise ValueError(f"sampler_kwargs.gen_batch_size must be >= 1, got {self.gen_batch_size}")
        if self.max_groups_per_step is not None and self.max_groups_per_step < 1:
            raise ValueError(f"sampler_kwargs.max_groups_per_step must be >= 1 or null, got {self.max_groups_per_step}")


@runtime_checkable
class DifficultySampling(Protocol):
    """What a replay buffer shares with the ``taosr1_sync`` trainer's dataloader
    (:mod:`taosr1_verl.integrations.verl.trainer`): the tracker its finished groups update, the group rule, and
    its options (batch granularity, selection policy, label schema). Both TaoSR1 buffers have them; with
    verl's own buffer the trainer builds its own tracker."""

    tracker: DifficultyTracker
    rule: GroupRule
    options: BufferOptions


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


def _column(data: Any, name: str, n: int, tensors: bool = False) -> list[Any]:
    """A TensorDict field as a Python list (tensors, non-tensor stacks and plain lists alike; ``tensors``:
    one tensor per row, as verl reads ``rm_scores``); ``None`` per row when no row has the field."""
    try:
        value = data[name]
    except KeyError:
        return [None] * n
    if tensors:
        return list(value)
    out = value.tolist() if hasattr(value, "tolist") else list(value)
    return [getattr(v, "data", v) for v in out]


def _merge_verl_kwargs(sampler_kwargs: Any, verl_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``sampler_kwargs`` with verl's constructor keywords folded in under their sampler_kwargs names; the same
    setting given both ways with different values is an error."""
    kw = dict(sampler_kwargs or {})
    for verl_key, value in verl_kwargs.items():
        key = _VERL_KWARGS[verl_key]
        if key == "gen_batch_size" and value is None:
            continue  # verl's "unset"; the buffer's default (1) stands
        if key in kw and kw[key] != value:
            raise ValueError(f"{verl_key}={value!r} contradicts trainer.v1.sampler.sampler_kwargs.{key}={kw[key]!r}")
        kw[key] = value
    return kw


class _TaoSR1SamplingMixin:
    """What both TaoSR1 buffers add to verl's (their :class:`DifficultySampling` side): shared set-up and the
    overrides of verl's private replay-buffer methods (the one place that knows them): fetch finished groups
    from TransferQueue, hand them to the partition's :class:`~taosr1_verl.sampling.GroupLedger`, and translate
    its decisions back into verl's structures."""

    _plans_refills = False
    """The sync loop's refill is sized by the keep rate; verl's async loop refills one per eviction."""

    def __init__(self, trainer_mode: str, trainer_config: Any, max_off_policy_threshold: int | None,
                 max_off_policy_strategy: str, sampler_kwargs: Any, poll_interval: float = 2.0,
                 refill_fn: Any = None, filter_groups_metric: str | None = _UNSET, train_batch_size: int | None = _UNSET,
                 gen_batch_size: int | None = _UNSET, max_inflight_gen_batches: int = _UNSET,
                 sync_refill_failed_groups: bool = _UNSET) -> None:
        given = {"filter_groups_metric": filter_groups_metric, "train_batch_size": train_batch_size,
                 "gen_batch_size": gen_batch_size, "max_inflight_gen_batches": max_inflight_gen_batches,
                 "sync_refill_failed_groups": sync_refill_failed_groups}
        kw = _merge_verl_kwargs(sampler_kwargs, {k: v for k, v in given.items() if v is not _UNSET})
        filtering = kw.get("metric", "acc") is not None
        if not filtering:
            kw.pop("metric")
        rule, tracker_cfg, opts = parse_sampler_kwargs(kw)
        self.rule = rule
        self.options = opts
        self.tracker = DifficultyTracker(0, tracker_cfg)
        if opts.passn_path:
            self.tracker.seed_from_passn(opts.passn_path)
        self.planner = RefillPlanner(margin=opts.refill_margin)
        self._schema = get_schema(opts.schema)
        self._ledgers: dict[str, GroupLedger] = {}
        self._batch_size: dict[str, int] = {}
        self._last_sampleable: dict[str, int] = defaultdict(int)
        self._refill_partition = "train"
        self._verl_refill_fn = refill_fn
        if self._plans_refills and filtering:
            if opts.train_batch_size is None:
                raise ValueError(f"{type(self).__name__} needs sampler_kwargs.train_batch_size: "
                                 "${data.train_batch_size}")
            if refill_fn is not None and opts.refill == "planned":
                refill_fn = self._planned_refill
        super().__init__(  # type: ignore[call-arg]
            trainer_mode, trainer_config, max_off_policy_threshold, max_off_policy_strategy, sampler_kwargs,
            poll_interval=poll_interval, refill_fn=refill_fn, filter_groups_metric=rule.metric if filtering else None,
            train_batch_size=opts.train_batch_size, gen_batch_size=opts.gen_batch_size,
            max_inflight_gen_batches=opts.max_inflight_gen_batches,
            sync_refill_failed_groups=opts.sync_refill_failed_groups,
        )

    def _ledger(self, partition_id: str) -> GroupLedger:
        ledger = self._ledgers.get(partition_id)
        if ledger is None:
            ledger = GroupLedger(self.rule, self.tracker, self.planner,
                                 class_levels=[lv.level for lv in self._schema.levels],
                                 max_groups_per_step=self.options.max_groups_per_step)
            self._ledgers[partition_id] = ledger
        return ledger

    # ---- reading a stored trajectory ------------------------------------------------------------
    def _row_key(self, index: Any, extra_info: Any, uid: str) -> int | None:
        """The group's dataset index: verl's ``index`` field, which ``RLHFDataset`` copies from ``extra_info.index``
        (:mod:`taosr1_verl.rl_rows`'s rule). A row whose ``extra_info`` lacks the index is refused (verl keyed it
        as 0); a trajectory with neither field (not from ``RLHFDataset``) is classified but not tracked."""
        where = f"finished group {uid}"
        if isinstance(extra_info, dict):
            key = rl_rows.row_index({"extra_info": extra_info}, where)
            if index is not None and rl_rows.check_index(index, where, "index") != key:
                raise rl_rows.RowError(f"{where}: field 'index' ({index}) differs from 'extra_info.index' ({key})")
            return key
        return None if index is None else rl_rows.check_index(index, where, "index")

    def _metric_value(self, extra_fields: Any) -> float | None:
        fields = getattr(extra_fields, "data", extra_fields)
        info = fields.get("reward_extra_info", {}) if isinstance(fields, dict) else {}
        if self.rule.metric not in info:
            return None
        try:
            return float(np.asarray(info[self.rule.metric], dtype=np.float64).reshape(-1)[0])
        except (TypeError, ValueError, IndexError):
            return float("nan")  # untrusted value: never correct, never constant

    def _fetch_groups(self, partition_id: str, uids: set[str]) -> tuple[list[str], list[list[float]], list[Any], list[int]]:
        """Per finished group (sorted by uid): its rollouts' metric values, dataset index and gold level, in
        one TransferQueue read. ``metric: reward`` is verl's reserved name: each rollout's summed
        ``rm_scores``; any other name is read from ``extra_fields.reward_extra_info``."""
        keys = [k for k in self.partitions[partition_id] if k.split("_")[0] in uids]
        missing = uids - {k.split("_")[0] for k in keys}
        reward = self.rule.metric == FILTER_GROUPS_REWARD_METRIC
        values: dict[str, list[float]] = defaultdict(list)
        first: dict[str, tuple[Any, Any, Any]] = {}
        if keys:
            metric_field = "rm_scores" if reward else "extra_fields"
            data = tq.kv_batch_get(keys=keys, partition_id=partition_id,
                                   select_fields=[metric_field, "index", "extra_info", "reward_model"])
            n = len(keys)
            metric = _column(data, metric_field, n, tensors=reward)
            rows = zip(keys, metric, *(_column(data, f, n) for f in ("index", "extra_info", "reward_model")),
                       strict=True)
            for key, m, index, extra_info, reward_model in rows:
                uid = key.split("_")[0]
                v = (None if m is None else float(m.sum().item())) if reward else self._metric_value(m)
                if v is None:
                    missing.add(uid)
                    continue
                values[uid].append(v)
                first.setdefault(uid, (index, extra_info, reward_model))
        if missing:
            where = "rm_scores" if reward else "reward_extra_info"
            raise RuntimeError(
                f"finished groups lack reward metric {self.rule.metric!r} in {where} "
                f"(e.g. {sorted(missing)[:5]}); the reward function must return it for every sample"
            )
        order = sorted(values)
        indices, levels = [], []
        for uid in order:
            index, extra_info, reward_model = first[uid]
            indices.append(self._row_key(index, extra_info, uid))
            levels.append(rl_rows.class_level({"reward_model": reward_model}, self._schema))
        return order, [values[u] for u in order], indices, levels

    # ---- verl's private hooks -------------------------------------------------------------------
    def _dapo_filtered_keys(self, partition_id: str) -> tuple[set[str], Counter]:
        """The group rule in place of verl's std-zero test, with verl's cache and return contract: the evicted
        uids and a ``{filtered value: group count}`` breakdown."""
        if partition_id == "val" or self.filter_groups_metric is None:
            return set(), Counter()
        finished = self.finished_keys[partition_id]
        cache = self._dapo_classification_cache[partition_id]
        for uid in cache.keys() - finished:
            del cache[uid]
        ledger = self._ledger(partition_id)
        ledger.retain(finished)
        new = finished - cache.keys()
        if new:
            uids, values, indices, levels = self._fetch_groups(partition_id, new)
            # The cache value is what verl's eviction reads: None = kept, else the value its breakdown counts.
            cache.update(zip(uids, ledger.add(uids, values, indices, levels), strict=True))
            ledger.check_budget(self._batch_size.get(partition_id) or self.options.train_batch_size or 0)
        evicted = {uid: v for uid, v in cache.items() if v is not None}
        return set(evicted), Counter(evicted.values())

    def _terminal_eviction_reasons(self, global_steps: int, partition_id: str):
        # Every path that classifies groups passes here (sample, and the async trainers' get_sampleable_count
        # and wait_for_sampleable): the tracker ages evidence by the step it was gathered for, and a refill
        # that follows belongs to this partition.
        if partition_id != "val":
            self.tracker.set_step(global_steps)
            self._refill_partition = partition_id
        return super()._terminal_eviction_reasons(global_steps, partition_id)

    def _sampleable_terminal_keys(self, partition_id: str, eviction_reasons: Any) -> set[str]:
        keys = super()._sampleable_terminal_keys(partition_id, eviction_reasons)
        if partition_id != "val":
            self._last_sampleable[partition_id] = len(keys)
        return keys

    def _planned_refill(self, count: int) -> int:
        """verl's refill_fn as the sync loop calls it, with its 2-per-evicted count: dispatches what the keep
        rate says is missing instead."""
        pid = self._refill_partition
        inflight = len(self.pending_keys[pid]) + len(self.running_keys[pid])
        target = self._batch_size.get(pid) or self.options.train_batch_size or count
        want = self._ledger(pid).plan_refill(count, target, self._last_sampleable[pid], inflight,
                                             self.options.gen_batch_size)
        return self._verl_refill_fn(want)

    def _select_prompt_uids(self, partition_id: str, sampleable_keys: set[str], batch_size: int):
        if partition_id == "val":
            return super()._select_prompt_uids(partition_id, sampleable_keys, batch_size)
        ordered, partition_snapshot, steps_snapshot = super()._select_prompt_uids(
            partition_id, sampleable_keys, len(sampleable_keys)
        )
        chosen = self._ledger(partition_id).balanced(ordered, batch_size, self.options.balance_batch)
        return chosen, partition_snapshot, steps_snapshot

    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        if partition_id == "val":
            return super().sample(global_steps, partition_id, batch_size)
        self._batch_size[partition_id] = batch_size
        batch_meta, metrics = super().sample(global_steps, partition_id, batch_size)
        ledger = self._ledger(partition_id)
        if self.filter_groups_metric is not None:
            prefix = f"{self._metrics_prefix(partition_id)}/{METRIC_GROUP}"
            metrics.update({f"{prefix}/{k}": v for k, v in ledger.metrics(len(batch_meta.keys)).items()})
        ledger.end_step()
        return batch_meta, metrics


class TaoSR1ReplayBuffer(_TaoSR1SamplingMixin, ReplayBuffer):
    """verl's sync V1 replay buffer with TaoSR1's group rule, tracker feedback and planned refills.

    Constructed by verl with ``trainer_mode, trainer_config, max_off_policy_threshold,
    max_off_policy_strategy, sampler_kwargs, refill_fn``; everything else comes from ``sampler_kwargs``
    (see :func:`parse_sampler_kwargs`), or from verl's own constructor keywords where given. The tracker is
    ``self.tracker``.
    """

    _plans_refills = True


class TaoSR1ReplayBufferAsync(_TaoSR1SamplingMixin, ReplayBufferAsync):
    """The async (``colocate_async``/``separate_async``) variant: same rule, tracker and metrics; verl's
    async loop refills exactly one prompt per evicted group, so no planned refill is needed, and kept groups
    beyond the batch stay buffered for the next step. Groups that finish while the trainer polls
    (``get_sampleable_count``, ``wait_for_sampleable``) are counted in the next ``sample``'s metrics."""
