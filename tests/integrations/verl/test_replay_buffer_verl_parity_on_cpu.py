"""TaoSR1ReplayBuffer/TaoSR1ReplayBufferAsync as drop-ins for verl 0.9.1's own ReplayBuffer, on a REAL
TransferQueue (no trainer, no model).

Two parts:

- verl's replay-buffer behaviours (the cases of verl's tests/trainer/ppo/v1/test_replay_buffer_on_cpu.py:
  config validation, sampling order, blocking, off-policy drop/wait, failed groups, DAPO refill counts,
  surplus discard, in-flight limits, the classification cache, validation passthrough), each run three
  times: on verl's buffer, on ours built with verl's own constructor keywords and no sampler_kwargs (its
  planned refill), and on ours with ``refill: verl``. The expectations are verl's; a case that fails only for
  ours is a departure.
- side by side: the same scripted rollouts through verl's buffer and ours in their own partitions, where the
  settings say they agree (0/1 metric and the default band; continuous values and ``rule: std_zero``; the
  reserved ``reward`` metric; groups of one rollout), comparing batches, refill calls and verl's eviction
  metrics step by step.

Groups are written as verl's agent loop writes them: every trajectory first (``uid_session_0`` with the
reward's ``extra_fields.reward_extra_info`` and ``rm_scores``), then the prompt key ``uid`` with its status.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest

ray = pytest.importorskip("ray")
tq = pytest.importorskip("transfer_queue")

pytestmark = pytest.mark.slow

POLL = 0.05
IMPLS = ("verl", "taosr1", "taosr1-verl-refill")


def _clear(partition: str) -> None:
    keys = list((tq.kv_list(partition_id=partition) or {}).get(partition, {}))
    if keys:
        tq.kv_clear(keys=keys, partition_id=partition)


@pytest.fixture
def pid(transfer_queue):
    """A partition of its own per test (not "train": verl then logs under the ``validation/`` prefix)."""
    partition = f"t{uuid.uuid4().hex}"
    yield partition
    _clear(partition)


@pytest.fixture
def val(transfer_queue):
    _clear("val")
    yield "val"
    _clear("val")


@pytest.fixture(params=IMPLS)
def impl(request) -> str:
    return request.param


def make_rb(impl: str, *, asynchronous: bool = False, threshold: int | None = 8, strategy: str = "drop",
            refill_fn=None, metric: str | None = None, train_batch_size: int = 2, gen_batch_size: int = 1,
            max_inflight: int = 1, refill_failed: bool = False, **sampler_kwargs):
    """The buffer under test, built with verl's constructor keywords (as verl's own tests build verl's)."""
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

    from taosr1_verl.integrations.verl.replay_buffer import TaoSR1ReplayBuffer, TaoSR1ReplayBufferAsync

    kwargs = dict(trainer_mode="colocate_async" if asynchronous else "sync", trainer_config={},
                  max_off_policy_threshold=threshold, max_off_policy_strategy=strategy, poll_interval=POLL,
                  refill_fn=refill_fn, filter_groups_metric=metric, train_batch_size=train_batch_size,
                  gen_batch_size=gen_batch_size, max_inflight_gen_batches=max_inflight,
                  sync_refill_failed_groups=refill_failed)
    if impl == "verl":
        assert not sampler_kwargs
        return (ReplayBufferAsync if asynchronous else ReplayBuffer)(sampler_kwargs={}, **kwargs)
    if impl == "taosr1-verl-refill":
        sampler_kwargs = {"refill": "verl", **sampler_kwargs}
    return (TaoSR1ReplayBufferAsync if asynchronous else TaoSR1ReplayBuffer)(sampler_kwargs=sampler_kwargs, **kwargs)


@dataclass
class Group:
    """One prompt's group: ``values`` are the per-rollout metric (None: no reward stored, ``sessions``
    trajectories), written as ``acc`` and ``score`` in reward_extra_info and as ``rm_scores`` summing to it."""

    status: str = "finished"
    values: list[float] | None = None
    sessions: int = 1
    step: int = 0
    index: int | None = None
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)
    keys: list[str] = field(default_factory=list)


def put(partition: str, *groups: Group) -> list[Group]:
    import torch

    for g in groups:
        for s in range(len(g.values) if g.values is not None else g.sessions):
            fields: dict = {"input_ids": torch.tensor([1, 2, 3])}
            if g.values is not None:
                v = float(g.values[s])
                fields["extra_fields"] = {"reward_extra_info": {"acc": v, "score": v}}
                fields["rm_scores"] = torch.tensor([0.0] * (s % 3) + [v])  # ragged rows, each summing to v
            if g.index is not None:
                fields["index"] = g.index
            key = f"{g.uid}_{s}_0"
            tq.kv_put(key=key, partition_id=partition, fields=fields,
                      tag={"is_prompt": False, "seq_len": 3, "global_steps": g.step})
            g.keys.append(key)
        set_status(partition, g, g.status)
    return list(groups)


def set_status(partition: str, g: Group, status: str, step: int | None = None) -> None:
    tq.kv_put(key=g.uid, partition_id=partition,
              tag={"is_prompt": True, "status": status, "global_steps": g.step if step is None else step})


class Refill:
    """The trainer's refill hook: writes ``n`` new groups (``values``/``status``) and records the call."""

    def __init__(self, partition: str, values: list[float] | None = None, step: int = 0, status: str = "finished",
                 sessions: int = 1):
        self.partition, self.values, self.step, self.status, self.sessions = partition, values, step, status, sessions
        self.calls: list[int] = []
        self.made: list[Group] = []

    def __call__(self, n: int) -> int:
        self.made += put(self.partition, *(Group(self.status, self.values, self.sessions, self.step)
                                           for _ in range(n)))
        self.calls.append(n)  # after the writes: a test that sees the call sees its groups
        return n

    @property
    def uids(self) -> set[str]:
        return {g.uid for g in self.made}


class Background(threading.Thread):
    """A blocking buffer call on its own thread, so the test can watch it wait."""

    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.result, self.error = None, None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args, **self.kwargs)
        except Exception as e:  # surfaced by get()
            self.error = e

    def get(self, timeout: float = 10.0):
        self.join(timeout)
        assert not self.is_alive(), "the buffer call did not return in time"
        if self.error is not None:
            raise self.error
        return self.result


def uids(keys) -> set[str]:
    return {k.split("_")[0] for k in keys}


def in_flight(partition: str) -> int:
    tags = (tq.kv_list(partition_id=partition) or {}).get(partition, {})
    return sum(bool(t.get("is_prompt")) and t.get("status") in ("pending", "running") for t in tags.values())


def verl_metrics(metrics: dict) -> dict:
    """verl's own entries of a sample's metrics (ours add ``<prefix>/taosr1_sampler/*``)."""
    return {k: v for k, v in metrics.items() if "/taosr1_sampler/" not in k}


# ---------------------------------------------------------------------------------------------------------
# Part 1: verl's replay-buffer behaviours, on verl's buffer and on ours.
# ---------------------------------------------------------------------------------------------------------


def test_constructor_validation(impl):
    with pytest.raises(AssertionError, match="max off policy threshold"):
        make_rb(impl, threshold=0)
    with pytest.raises(AssertionError, match="max off policy strategy"):
        make_rb(impl, strategy="bogus")
    with pytest.raises(ValueError, match="max_inflight_gen_batches"):
        make_rb(impl, refill_fn=lambda n: n, metric="acc", max_inflight=0)
    with pytest.raises(ValueError, match="requires refill_fn"):
        make_rb(impl, metric="acc")
    with pytest.raises(ValueError, match="requires refill_fn"):
        make_rb(impl, refill_failed=True)
    with pytest.raises(ValueError, match="requires gen_batch_size=1"):
        make_rb(impl, refill_failed=True, refill_fn=lambda n: n, gen_batch_size=2)


def test_sample_takes_terminal_groups_and_consumes_their_prompt_keys(impl, pid):
    done, failed, running = put(pid, Group(sessions=2), Group("failure"), Group("running"))
    batch, metrics = make_rb(impl).sample(global_steps=0, partition_id=pid, batch_size=2)
    assert batch.partition_id == pid and set(batch.keys) == set(done.keys + failed.keys)
    assert len(batch.tags) == len(batch.keys) and metrics == {}
    left = tq.kv_list(partition_id=pid)[pid]
    assert done.uid not in left and failed.uid not in left and running.uid in left


def test_failed_groups_without_trajectories(impl, pid):
    done, _empty = put(pid, Group(), Group("failure", sessions=0))
    batch, metrics = make_rb(impl).sample(global_steps=0, partition_id=pid, batch_size=2)
    assert uids(batch.keys) == {done.uid} and metrics == {}  # padded downstream, as verl does by default
    _clear(pid)
    put(pid, Group("failure", sessions=0), Group("failure", sessions=0))
    with pytest.raises(RuntimeError, match="sync_refill_failed_groups"):
        make_rb(impl).sample(global_steps=0, partition_id=pid, batch_size=2)


def test_oldest_groups_first_and_the_rest_left(impl, pid):
    newest, oldest, middle, failed_old = put(pid, Group(step=5), Group(step=1), Group(step=2),
                                             Group("failure", step=0))
    batch, _ = make_rb(impl).sample(global_steps=0, partition_id=pid, batch_size=3)
    assert uids(batch.keys) == {failed_old.uid, oldest.uid, middle.uid}
    assert newest.uid in tq.kv_list(partition_id=pid)[pid]


def test_sample_blocks_until_the_batch_is_there(impl, pid):
    put(pid, Group())
    call = Background(make_rb(impl).sample, global_steps=0, partition_id=pid, batch_size=2)
    time.sleep(POLL * 5)
    assert call.is_alive()
    put(pid, Group(sessions=3))
    batch, _ = call.get()
    assert len(batch.keys) == 4


def test_whole_groups_and_surplus_drained_once(impl, pid):
    groups = put(pid, *(Group(sessions=4) for _ in range(5)))
    rb = make_rb(impl)
    seen: list[str] = []
    for bs in (2, 2, 1):
        batch, _ = rb.sample(global_steps=0, partition_id=pid, batch_size=bs)
        assert Counter(k.split("_")[0] for k in batch.keys) == Counter({u: 4 for u in uids(batch.keys)})
        assert len(uids(batch.keys)) == bs and not uids(batch.keys) & set(seen)
        seen += uids(batch.keys)
        rb._sync_metadata_from_transfer_queue()
    assert set(seen) == {g.uid for g in groups}


def test_async_drop_evicts_stale_groups_and_refills_them(impl, pid):
    stale, boundary, fresh, _running = put(pid, Group(step=0), Group(step=4), Group(step=5),
                                           Group("running", step=0))
    refill = Refill(pid, step=5)
    rb = make_rb(impl, asynchronous=True, threshold=2, refill_fn=refill)
    batch, metrics = rb.sample(global_steps=5, partition_id=pid, batch_size=3)
    got = uids(batch.keys)
    assert {boundary.uid, fresh.uid} <= got and stale.uid not in got and len(got & refill.uids) == 1
    assert refill.calls == [1]
    assert metrics["validation/off_policy/evicted_samples"] == 1
    assert metrics["validation/off_policy/evicted_samples_staleness/mean"] == 6
    left = tq.kv_list(partition_id=pid)[pid]
    assert stale.uid not in left and stale.keys[0] not in left


def test_async_drop_uses_one_snapshot_per_poll(impl, pid):
    stale_done, stale_running = put(pid, Group(step=0), Group("running", step=0))
    refill = Refill(pid, step=5)

    def finish_during_first_refill(n: int) -> int:
        if not refill.calls:
            set_status(pid, stale_running, "finished")
        return refill(n)

    rb = make_rb(impl, asynchronous=True, threshold=1, refill_fn=finish_during_first_refill)
    batch, metrics = rb.sample(global_steps=5, partition_id=pid, batch_size=1)
    assert uids(batch.keys) <= refill.uids and refill.calls == [1, 1]
    assert metrics["validation/off_policy/evicted_samples"] == 2


def test_async_wait_blocks_on_stale_in_flight_and_never_drops(impl, pid):
    _fresh, _fresh2, stale = put(pid, Group(step=5), Group(step=5), Group("running", step=0))
    call = Background(make_rb(impl, asynchronous=True, strategy="wait", threshold=2).sample,
                      global_steps=5, partition_id=pid, batch_size=2)
    time.sleep(POLL * 5)
    assert call.is_alive()
    set_status(pid, stale, "finished")
    batch, _ = call.get()
    assert len(uids(batch.keys)) == 2
    _clear(pid)
    (old,) = put(pid, Group(step=0))
    batch, metrics = make_rb(impl, asynchronous=True, strategy="wait", threshold=2).sample(
        global_steps=100, partition_id=pid, batch_size=1)
    assert set(batch.keys) == set(old.keys) and metrics == {}


def test_validation_is_never_filtered_dropped_or_refilled(impl, val):
    constant, failed = put(val, Group(values=[1.0, 1.0], step=0), Group("failure", step=0))
    refill = Refill(val, values=[0.0, 1.0], step=5)
    rb = make_rb(impl, asynchronous=True, threshold=1, refill_fn=refill, metric="acc")
    batch, metrics = rb.sample(global_steps=5, partition_id=val, batch_size=2)
    assert uids(batch.keys) == {constant.uid, failed.uid} and refill.calls == [] and metrics == {}
    _clear(val)
    done, _empty = put(val, Group(), Group("failure", sessions=0))
    rb = make_rb(impl, refill_failed=True, refill_fn=refill)
    batch, metrics = rb.sample(global_steps=1, partition_id=val, batch_size=2)
    assert uids(batch.keys) == {done.uid} and refill.calls == [] and metrics == {}


@pytest.mark.parametrize("strategy", ["drop", "wait"])
def test_sync_ignores_the_off_policy_strategy(impl, pid, strategy):
    groups = put(pid, Group(step=0), Group(step=5))
    batch, metrics = make_rb(impl, strategy=strategy, threshold=1).sample(global_steps=5, partition_id=pid,
                                                                          batch_size=2)
    assert uids(batch.keys) == {g.uid for g in groups} and metrics == {}


def test_failed_groups_are_refilled_one_for_one(impl, pid):
    done, failed = put(pid, Group(), Group("failure"))
    refill = Refill(pid, step=1)
    batch, metrics = make_rb(impl, asynchronous=True, refill_fn=refill).sample(global_steps=1, partition_id=pid,
                                                                               batch_size=2)
    assert done.uid in uids(batch.keys) and failed.uid not in uids(batch.keys) and refill.calls == [1]
    assert metrics["validation/rollout_failure/evicted_samples"] == 1
    _clear(pid)
    put(pid, *(Group("failure", sessions=0) for _ in range(3)))
    refill = Refill(pid, step=1)
    rb = make_rb(impl, refill_failed=True, refill_fn=refill, train_batch_size=3)
    batch, metrics = rb.sample(global_steps=1, partition_id=pid, batch_size=3)
    assert uids(batch.keys) == refill.uids and refill.calls == [3]
    assert metrics["validation/rollout_failure/evicted_samples"] == 3


def test_sync_failure_refill_keeps_materializable_groups_and_unrelated_in_flight(impl, pid):
    groups = put(pid, Group(), Group("failure", sessions=1))
    refill = Refill(pid, step=1)
    batch, metrics = make_rb(impl, refill_failed=True, refill_fn=refill).sample(global_steps=1, partition_id=pid,
                                                                                batch_size=2)
    assert uids(batch.keys) == {g.uid for g in groups} and refill.calls == [] and metrics == {}
    _clear(pid)
    done, _empty, running = put(pid, Group(), Group("failure", sessions=0), Group("running", sessions=0))
    call = Background(make_rb(impl, refill_failed=True, refill_fn=refill).sample, global_steps=1,
                      partition_id=pid, batch_size=1)
    try:
        batch, metrics = call.get(timeout=3)
        assert uids(batch.keys) == {done.uid} and refill.calls == []
        assert metrics["validation/rollout_failure/evicted_samples"] == 1
        assert running.uid in tq.kv_list(partition_id=pid)[pid]
    finally:
        if call.is_alive():
            set_status(pid, running, "finished")
            call.join(3)


def test_async_filter_refills_one_per_evicted_group(impl, pid):
    constant, mixed = put(pid, Group(values=[1.0, 1.0]), Group(values=[0.0, 1.0]))
    refill = Refill(pid, values=[0.0, 1.0], step=1)
    rb = make_rb(impl, asynchronous=True, refill_fn=refill, metric="acc")
    batch, metrics = rb.sample(global_steps=1, partition_id=pid, batch_size=2)
    assert mixed.uid in uids(batch.keys) and constant.uid not in uids(batch.keys) and refill.calls == [1]
    assert metrics["validation/filter_groups/evicted_samples"] == 1


def test_classification_cache_reads_each_finished_group_once(impl, pid, monkeypatch):
    first, mixed = put(pid, Group(values=[1.0, 1.0]), Group(values=[0.0, 1.0]))
    reads: list[set[str]] = []
    real_get = tq.kv_batch_get

    def spy(*args, **kwargs):  # the real read, recorded
        reads.append(set(kwargs["keys"]))
        return real_get(*args, **kwargs)

    monkeypatch.setattr(tq, "kv_batch_get", spy)
    rb = make_rb(impl, metric="acc", refill_fn=lambda n: n)
    rb._sync_metadata_from_transfer_queue()
    once = rb._dapo_filtered_keys(pid)
    assert once[0] == {first.uid} and dict(once[1]) == {1.0: 1}
    assert rb._dapo_filtered_keys(pid) == once
    (second,) = put(pid, Group(values=[0.0, 0.0]))
    rb._sync_metadata_from_transfer_queue()
    evicted, counts = rb._dapo_filtered_keys(pid)
    assert evicted == {first.uid, second.uid} and dict(counts) == {0.0: 1, 1.0: 1}
    assert reads == [set(first.keys + mixed.keys), set(second.keys)]


def test_eviction_reasons_carry_the_breakdown_without_hidden_state(impl, pid):
    from verl.trainer.ppo.v1.replay_buffer import DAPO_FILTERED_REWARD_COUNTS_KEY

    zero, one, _mixed = put(pid, Group(values=[0.0, 0.0]), Group(values=[1.0, 1.0]), Group(values=[0.0, 1.0]))
    rb = make_rb(impl, asynchronous=True, metric="acc", refill_fn=lambda n: n)
    rb._sync_metadata_from_transfer_queue()
    reasons = rb._terminal_eviction_reasons(global_steps=0, partition_id=pid)
    assert reasons[1] == {zero.uid, one.uid} and reasons[3] == Counter({0.0: 1, 1.0: 1})
    assert rb._terminal_eviction_reasons(global_steps=0, partition_id="val") == (set(), set(), set(), Counter())
    _evicted, _stale, filtered, metrics = rb._evict_terminal_groups(0, pid, reasons)
    assert filtered == 2 and metrics[DAPO_FILTERED_REWARD_COUNTS_KEY] == {0.0: 1, 1.0: 1}


def test_filtered_value_breakdown(impl, pid):
    from verl.trainer.ppo.v1.replay_buffer import DAPO_FILTERED_REWARD_COUNTS_KEY

    put(pid, Group(values=[0.0, 0.0]), Group(values=[0.0, 0.0]), Group(values=[1.0, 1.0]), Group(values=[0.0, 1.0]))
    rb = make_rb(impl, asynchronous=True, refill_fn=Refill(pid, values=[0.0, 1.0], step=1), metric="acc")
    _, metrics = rb.sample(global_steps=1, partition_id=pid, batch_size=1)
    assert metrics["validation/filter_groups/evicted_samples"] == 3
    assert metrics[DAPO_FILTERED_REWARD_COUNTS_KEY] == {0.0: 2, 1.0: 1}


def test_sync_filter_refills_twice_and_discards_the_surplus(impl, pid):
    constant, mixed = put(pid, Group(values=[0.0, 0.0]), Group(values=[0.0, 1.0]))
    refill = Refill(pid, values=[0.0, 1.0], step=1)
    batch, metrics = make_rb(impl, refill_fn=refill, metric="acc").sample(global_steps=1, partition_id=pid,
                                                                          batch_size=2)
    got = uids(batch.keys)
    assert mixed.uid in got and constant.uid not in got and refill.calls == [2] and len(got & refill.uids) == 1
    assert metrics["validation/filter_groups/evicted_samples"] == 1
    assert metrics["validation/filter_groups/discarded_surplus_samples"] == 1
    (surplus,) = [g for g in refill.made if g.uid not in got]
    left = tq.kv_list(partition_id=pid)[pid]
    assert surplus.uid not in left and not set(surplus.keys) & set(left)


def test_sync_filter_and_failure_credits_add_up(impl, pid):
    constant, _empty, mixed = put(pid, Group(values=[0.0, 0.0]), Group("failure", sessions=0),
                                  Group(values=[0.0, 1.0]))
    refill = Refill(pid, values=[0.0, 1.0], step=1)
    rb = make_rb(impl, refill_fn=refill, metric="acc", refill_failed=True, train_batch_size=3)
    batch, metrics = rb.sample(global_steps=1, partition_id=pid, batch_size=3)
    assert len(uids(batch.keys)) == 3 and mixed.uid in uids(batch.keys) and refill.calls == [3]
    assert metrics["validation/filter_groups/evicted_samples"] == 1
    assert metrics["validation/rollout_failure/evicted_samples"] == 1
    assert metrics["validation/filter_groups/discarded_surplus_samples"] == 1


def test_sync_filter_does_not_refill_a_full_batch(impl, pid):
    _constant, *mixed = put(pid, Group(values=[0.0, 0.0]), Group(values=[0.0, 1.0]), Group(values=[1.0, 0.0]))
    refill = Refill(pid, values=[0.0, 1.0], step=1)
    batch, metrics = make_rb(impl, refill_fn=refill, metric="acc", train_batch_size=3).sample(
        global_steps=1, partition_id=pid, batch_size=2)
    assert uids(batch.keys) == {g.uid for g in mixed} and refill.calls == []
    assert metrics["validation/filter_groups/evicted_samples"] == 1


def test_sync_filter_streams_its_credit_through_the_in_flight_bound(impl, pid):
    constant, slow = put(pid, Group(values=[0.0, 0.0]), Group("running", values=[0.0, 1.0]))
    refill = Refill(pid, values=[0.0, 1.0], step=1)
    rb = make_rb(impl, refill_fn=refill, metric="acc", train_batch_size=2, max_inflight=1)
    call = Background(rb.sample, global_steps=1, partition_id=pid, batch_size=2)
    deadline = time.time() + 5
    while len(refill.calls) < 2 and call.is_alive() and time.time() < deadline:
        time.sleep(POLL)
    assert refill.calls == [1, 1] and call.is_alive()  # one slot free while the original group runs
    set_status(pid, slow, "finished")
    batch, metrics = call.get()
    assert len(uids(batch.keys)) == 2 and constant.uid not in uids(batch.keys)
    assert metrics["validation/filter_groups/evicted_samples"] == 1
    assert metrics["validation/filter_groups/discarded_surplus_samples"] == 1


def test_sync_filter_drops_unsent_credit_once_the_batch_fills(impl, pid):
    constant, slow = put(pid, Group(values=[0.0, 0.0]), Group("running", values=[0.0, 1.0]))
    refill = Refill(pid, values=[0.0, 1.0], step=1)

    def refill_then_finish(n: int) -> int:
        out = refill(n)
        set_status(pid, slow, "finished")
        return out

    rb = make_rb(impl, refill_fn=refill_then_finish, metric="acc", train_batch_size=2, max_inflight=1)
    batch, metrics = rb.sample(global_steps=1, partition_id=pid, batch_size=2)
    assert len(uids(batch.keys)) == 2 and constant.uid not in uids(batch.keys) and refill.calls == [1]
    assert metrics["validation/filter_groups/evicted_samples"] == 1
    assert "validation/filter_groups/discarded_surplus_samples" not in metrics


def test_sync_filter_never_exceeds_the_in_flight_limit(impl, pid):
    _constant, original = put(pid, Group(values=[0.0, 0.0]), Group("running", values=[0.0, 1.0]))
    refill = Refill(pid, values=[0.0, 1.0], step=1, status="running")
    rb = make_rb(impl, refill_fn=refill, metric="acc", train_batch_size=2, max_inflight=1)
    call = Background(rb.sample, global_steps=1, partition_id=pid, batch_size=2)

    def watch(until, seconds: float = 5.0) -> None:
        deadline = time.time() + seconds
        while not until() and call.is_alive() and time.time() < deadline:
            assert in_flight(pid) <= 2
            time.sleep(POLL / 2)

    watch(lambda: len(refill.calls) >= 1)
    watch(lambda: False, seconds=2 * POLL)
    assert refill.calls == [1] and in_flight(pid) == 2
    set_status(pid, original, "finished")
    watch(lambda: len(refill.calls) >= 2)
    assert refill.calls == [1, 1] and in_flight(pid) == 2
    for g in refill.made:
        set_status(pid, g, "finished")
    watch(lambda: not call.is_alive())
    batch, _ = call.get()
    assert len(uids(batch.keys)) == 2


def test_async_group_both_stale_and_filtered_is_refilled_once(impl, pid):
    put(pid, Group(values=[1.0, 1.0], step=0))
    refill = Refill(pid, values=[0.0, 1.0], step=5)
    rb = make_rb(impl, asynchronous=True, threshold=1, refill_fn=refill, metric="acc")
    _, metrics = rb.sample(global_steps=5, partition_id=pid, batch_size=1)
    assert refill.calls == [1]
    assert metrics["validation/off_policy/evicted_samples"] == 1
    assert metrics["validation/filter_groups/evicted_samples"] == 1


def test_async_depth_queries(impl, pid):
    fresh, stale = put(pid, Group(step=5), Group(step=0))
    rb = make_rb(impl, asynchronous=True, threshold=1)
    assert rb.get_sampleable_count(global_steps=5, partition_id=pid) == 1
    assert {fresh.uid, stale.uid} <= set(tq.kv_list(partition_id=pid)[pid])
    _clear(pid)
    ready, pending = put(pid, Group(), Group("running"))
    rb = make_rb(impl, asynchronous=True)
    call = Background(rb.wait_for_sampleable, global_steps=0, partition_id=pid, target_count=2)
    time.sleep(POLL * 5)
    assert call.is_alive()
    set_status(pid, pending, "finished")
    assert call.get()[1] == {}
    batch, _ = rb.sample(global_steps=0, partition_id=pid, batch_size=2)  # waiting consumed nothing
    assert uids(batch.keys) == {ready.uid, pending.uid}
    _clear(pid)
    put(pid, Group(step=0))
    refill = Refill(pid, step=5)
    rb = make_rb(impl, asynchronous=True, threshold=1, refill_fn=refill)
    _, metrics = rb.wait_for_sampleable(global_steps=5, partition_id=pid, target_count=1)
    assert refill.calls == [1] and metrics["validation/off_policy/evicted_samples"] == 1
    batch, _ = rb.sample(global_steps=5, partition_id=pid, batch_size=1)
    assert uids(batch.keys) == refill.uids


# ---------------------------------------------------------------------------------------------------------
# Part 2: the same rollouts through verl's buffer and ours, side by side.
# ---------------------------------------------------------------------------------------------------------


class Script:
    """Refill hook that writes the next groups of a fixed script (group ``k`` gets ``index=k`` and prompt
    step ``k``, so verl's oldest-first order is total and both buffers see the same order)."""

    def __init__(self, partition: str, script: list[list[float]]):
        self.partition, self.script = partition, script
        self.calls: list[int] = []
        self.cursor = 0

    def __call__(self, n: int) -> int:
        groups = [Group(values=self.script[(self.cursor + i) % len(self.script)], step=self.cursor + i,
                        index=self.cursor + i) for i in range(n)]
        self.cursor += n
        put(self.partition, *groups)
        self.calls.append(n)
        return n


def run_steps(build, script: list[list[float]], batch: int, steps: int):
    """Run ``steps`` trainer steps (dispatch a batch of prompts, sample, drop the batch) in a fresh partition;
    per step: the batch's script positions, the refill calls and verl's eviction metrics. Async buffers keep
    what they kept beyond a batch for the next step."""
    partition = f"t{uuid.uuid4().hex}"
    rollout = Script(partition, script)
    rb = build(rollout)
    out = []
    try:
        for step in range(1, steps + 1):
            rollout(batch)
            rollout.calls.clear()
            meta, metrics = rb.sample(global_steps=step, partition_id=partition, batch_size=batch)
            data = tq.kv_batch_get(keys=meta.keys, partition_id=partition, select_fields=["index"])
            picked = sorted({int(getattr(i, "data", i)) for i in list(data["index"])})
            out.append((picked, list(rollout.calls), verl_metrics(metrics)))
            tq.kv_clear(keys=meta.keys, partition_id=partition)
        return out, rb
    finally:
        _clear(partition)


def _mixed_script(n: int, g: int, seed: int, values: tuple[float, ...]) -> list[list[float]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    # Many constant groups (easy and hard prompts), some mixed: the regime where the filter matters.
    out = []
    for _ in range(n):
        kind = rng.integers(3)
        out.append([float(rng.choice(values))] * g if kind < 2 else [float(v) for v in rng.choice(values, g)])
    return out


@pytest.mark.parametrize(("case", "values", "metric", "ours"), [
    ("binary acc, default band", (0.0, 1.0), "acc", {}),
    ("continuous score, std_zero", (-1.0, 0.0, 0.1, 0.5, 0.6, 0.9, 1.0), "score", {"rule": "std_zero"}),
    ("reserved reward (summed rm_scores), std_zero", (-1.0, 0.0, 0.1, 0.6, 1.0), "reward", {"rule": "std_zero"}),
])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_same_rollouts_same_batches_refills_and_evictions(transfer_queue, case, values, metric, ours, asynchronous):
    from taosr1_verl.integrations.verl.replay_buffer import TaoSR1ReplayBuffer, TaoSR1ReplayBufferAsync

    script = _mixed_script(40, 4, seed=len(case), values=values)
    # A 3 x 0.1 group: float64 gives it a tiny nonzero std, so verl keeps it; ours must too.
    script[3] = [0.1, 0.1, 0.1] if 0.1 in values else script[3]
    kw = dict(trainer_mode="colocate_async" if asynchronous else "sync", trainer_config={},
              max_off_policy_threshold=None, max_off_policy_strategy="drop", poll_interval=POLL,
              filter_groups_metric=metric, train_batch_size=4, gen_batch_size=1, max_inflight_gen_batches=2)
    verl_cls = _verl_classes()[asynchronous]
    ours_cls = TaoSR1ReplayBufferAsync if asynchronous else TaoSR1ReplayBuffer
    theirs, _ = run_steps(lambda r: verl_cls(sampler_kwargs={}, refill_fn=r, **kw), script, 4, 3)
    mine, rb = run_steps(lambda r: ours_cls(sampler_kwargs={"refill": "verl", **ours}, refill_fn=r, **kw),
                         script, 4, 3)
    assert mine == theirs
    assert any(m.get("validation/filter_groups/evicted_samples") for _, _, m in theirs)  # the filter did work
    assert rb.tracker.groups_observed > 0  # and ours learnt from every finished group meanwhile


def _verl_classes():
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

    return {False: ReplayBuffer, True: ReplayBufferAsync}


@pytest.mark.parametrize("refill", ["planned", "verl"])
def test_groups_of_one_rollout_are_kept_as_verl_keeps_them(transfer_queue, refill):
    from taosr1_verl.integrations.verl.replay_buffer import TaoSR1ReplayBuffer

    # rollout.n = 1: nothing to compare within a group, so verl never filters; ours used to evict every group
    # and refill until max_groups_per_step gave up.
    script = [[0.0], [1.0], [1.0], [0.0], [1.0], [0.0]]
    kw = dict(trainer_mode="sync", trainer_config={}, max_off_policy_threshold=None, max_off_policy_strategy="drop",
              poll_interval=POLL, filter_groups_metric="acc", train_batch_size=3, max_inflight_gen_batches=1)
    theirs, _ = run_steps(lambda r: _verl_classes()[False](sampler_kwargs={}, refill_fn=r, **kw), script, 3, 2)
    mine, rb = run_steps(lambda r: TaoSR1ReplayBuffer(
        sampler_kwargs={"refill": refill, "group_size": 1, "max_groups_per_step": 6}, refill_fn=r, **kw),
        script, 3, 2)
    assert mine == theirs == [([0, 1, 2], [], {}), ([3, 4, 5], [], {})]
    assert rb.tracker.groups_observed == 6


def test_reward_metric_under_the_band_rule_and_which_rule_the_metrics_name(transfer_queue):
    from taosr1_verl.integrations.verl.replay_buffer import TaoSR1ReplayBuffer

    # `metric: reward` used to fail ("finished groups lack reward metric 'reward'"). The band reads the summed
    # rm_scores through the threshold: 0.6/0.9 are both correct (evicted, too easy), where verl keeps it.
    script = [[0.6, 0.9], [-1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    kw = dict(trainer_mode="sync", trainer_config={}, max_off_policy_threshold=None, max_off_policy_strategy="drop",
              poll_interval=POLL, train_batch_size=2, max_inflight_gen_batches=2)
    partition = f"t{uuid.uuid4().hex}"
    rollout = Script(partition, script)
    rb = TaoSR1ReplayBuffer(sampler_kwargs={"metric": "reward", "refill": "verl"}, refill_fn=rollout, **kw)
    try:
        rollout(2)
        _, metrics = rb.sample(global_steps=1, partition_id=partition, batch_size=2)
    finally:
        _clear(partition)
    p = "validation/taosr1_sampler"
    assert metrics[f"{p}/evicted/too_easy"] == 1 and metrics[f"{p}/evicted/too_hard"] == 1
    assert metrics[f"{p}/rule/std_zero"] == 0.0 and metrics[f"{p}/rule/threshold"] == 0.5
    assert rollout.calls == [2, 4]  # verl's rule: 2 per evicted group (up to the in-flight bound)


def test_refills_count_the_in_flight_prompts_of_the_partition_sampled(transfer_queue):
    from taosr1_verl.integrations.verl.replay_buffer import TaoSR1ReplayBuffer

    # Four prompts still rolling out in this partition, none in "train": the planner must see the four.
    partition = f"t{uuid.uuid4().hex}"
    dispatched: list[int] = []
    rb = TaoSR1ReplayBuffer("sync", {}, None, "drop", {"refill_margin": 0.0}, refill_fn=dispatched.append,
                            filter_groups_metric="acc", train_batch_size=8, max_inflight_gen_batches=4)
    try:
        put(partition, *(Group("running", values=[0.0, 1.0]) for _ in range(4)))
        rb._sync_metadata_from_transfer_queue()
        rb._sampleable_terminal_keys(partition, rb._terminal_eviction_reasons(1, partition))
        rb._planned_refill(16)
    finally:
        _clear(partition)
    # keep rate 0.5 (no group finished yet): (8 - 0 - 0.5 * 4) / 0.5 = 12; counting "train" (empty) gives 16.
    assert dispatched == [12]
    assert rb._ledger(partition).tally.refill_dispatched == 12 and "train" not in rb._ledgers
