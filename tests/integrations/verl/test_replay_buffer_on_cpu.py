"""TaoSR1ReplayBuffer and TaoSR1ReplayBufferAsync against a REAL local TransferQueue on Ray (no trainer, no
model).

The trainer's rollout is replaced by a refill function that writes finished groups into TransferQueue in
verl's layout (prompt key ``uid`` with a status tag, trajectories ``uid_session_0`` with the row's fields and
``extra_fields.reward_extra_info``), with outcomes scripted per dataset index. For the async buffer the
groups are first tagged ``running`` and finish a moment later on a timer thread, as agent-loop workers do
while the trainer polls. Everything else (metadata sync, eviction, refill credit, drain, surplus discard,
polling, materialisation) is verl 0.9.1's own code.
"""

from __future__ import annotations

import threading
import uuid

import pytest

ray = pytest.importorskip("ray")
tq = pytest.importorskip("transfer_queue")

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _empty_partitions(transfer_queue):
    """Each test starts from an empty store, whatever the previous one left (e.g. its last batch)."""
    yield
    for partition, items in (tq.kv_list() or {}).items():
        if items:
            tq.kv_clear(keys=list(items), partition_id=partition)


class ScriptedRollout:
    """Refill function: fetch the next dataset rows and store their finished groups in TransferQueue."""

    def __init__(self, outcomes: dict[int, list[int]], order: list[int], levels: dict[int, int], step: int = 1,
                 finish_after: float | None = None, without_index: bool = False):
        self.outcomes, self.order, self.levels, self.step = outcomes, list(order), levels, step
        self.without_index = without_index  # rows without extra_info.index: RLHFDataset stores index 0
        self.finish_after = finish_after  # None: groups are finished when dispatched; else seconds running
        self.cursor = 0
        self.dispatched: list[int] = []
        self.timers: list[threading.Timer] = []

    def put_group(self, index: int, partition: str = "train", uid: str | None = None) -> str:
        import torch
        from verl.utils.tensordict_utils import list_of_dict_to_tensordict

        uid = uid or str(uuid.uuid4())
        accs = self.outcomes[index]
        level = self.levels[index]
        keys, fields, tags = [], [], []
        for s, acc in enumerate(accs):
            keys.append(f"{uid}_{s}_0")
            fields.append({
                "responses": torch.tensor([1, 2, 3]),
                "index": 0 if self.without_index else index,
                "extra_info": {"level": level} if self.without_index else {"index": index, "level": level},
                "reward_model": {"style": "rule", "ground_truth": str(level)},
                "extra_fields": {"reward_extra_info": {"acc": acc, "score": float(acc)}},
            })
            tags.append({"status": "success", "global_steps": self.step})
        tq.kv_batch_put(keys=keys, partition_id=partition, fields=list_of_dict_to_tensordict(fields), tags=tags)
        tq.kv_put(key=uid, partition_id=partition, tag={"is_prompt": True, "status": "finished",
                                                       "global_steps": self.step})
        return uid

    def __call__(self, n: int) -> int:
        for _ in range(n):
            index = self.order[self.cursor % len(self.order)]
            self.cursor += 1
            self.dispatched.append(index)
            if self.finish_after is None:
                self.put_group(index)
                continue
            uid = str(uuid.uuid4())
            tq.kv_put(key=uid, partition_id="train", tag={"is_prompt": True, "status": "running",
                                                          "global_steps": self.step})
            timer = threading.Timer(self.finish_after, self.put_group, args=(index,), kwargs={"uid": uid})
            timer.start()
            self.timers.append(timer)
        return n


def _buffer(rollout, asynchronous: bool = False, **kwargs):
    from taosr1_verl.integrations.verl.replay_buffer import TaoSR1ReplayBuffer, TaoSR1ReplayBufferAsync

    sampler_kwargs = {"train_batch_size": 4, "gen_batch_size": 1, "max_inflight_gen_batches": 4, **kwargs}
    cls, mode = (TaoSR1ReplayBufferAsync, "separate_async") if asynchronous else (TaoSR1ReplayBuffer, "sync")
    return cls(mode, {}, None, "drop", sampler_kwargs, refill_fn=rollout, poll_interval=0.05)


def _batch_indices(meta) -> list[int]:
    data = tq.kv_batch_get(keys=meta.keys, partition_id=meta.partition_id, select_fields=["index"])
    return sorted({int(getattr(i, "data", i)) for i in list(data["index"])})


def test_groups_kept_evicted_and_refilled(transfer_queue):
    G = 4
    # 0-3 all correct (too easy), 4-5 all wrong (too hard), 6-11 mixed; TaoSR1 gamma=4: keep 1..3 correct.
    outcomes = {i: [1] * G for i in range(4)} | {i: [0] * G for i in (4, 5)}
    outcomes |= {i: [1, 0, 1, 0] for i in range(6, 12)}
    levels = {i: (4, 3, 2, 1)[i % 4] for i in range(12)}
    rollout = ScriptedRollout(outcomes, order=list(range(12)), levels=levels)
    buf = _buffer(rollout, gamma=4, refill="verl", balance_batch=False)
    rollout(4)  # the trainer's first batch: four too-easy prompts
    meta, metrics = buf.sample(global_steps=1, partition_id="train", batch_size=4)

    batch = _batch_indices(meta)
    assert len(batch) == 4 and set(batch) <= set(range(6, 12))  # only informative groups are trained
    assert len(meta.keys) == 4 * G
    p = "training/taosr1_sampler"
    assert metrics[f"{p}/evicted/too_easy"] == 4
    assert metrics[f"{p}/evicted/too_hard"] == 2
    assert metrics[f"{p}/groups_kept"] >= 4
    assert metrics["training/filter_groups/evicted_samples"] == 6
    finished = metrics[f"{p}/rollouts_finished"]
    assert metrics[f"{p}/wasted_rollout_fraction"] == pytest.approx(1 - 4 * G / finished)
    # Every finished group reached the tracker, keyed by dataset index, with its gold level.
    t = buf.tracker
    assert t.groups[:10].tolist() == [1] * 10
    assert t.succ[0] == G and t.fail[4] == G and t.succ[6] == 2 and t.fail[6] == 2
    assert t.level[:4].tolist() == [4, 3, 2, 1]
    # Like the trainer after its update: drop the batch. Evicted and surplus groups are gone already.
    tq.kv_clear(keys=meta.keys, partition_id="train")
    assert not tq.kv_list("train").get("train")


def test_a_step_of_only_constant_groups_stops_with_a_clear_error(transfer_queue):
    # A model whose every group is all wrong (it cannot write the format): without a limit verl would
    # refill forever; with max_groups_per_step the run stops once that many groups finished this step.
    outcomes = {i: [0, 0, 0, 0] for i in range(40)}
    rollout = ScriptedRollout(outcomes, order=list(range(40)), levels={i: 4 for i in range(40)})
    buf = _buffer(rollout, gamma=4, refill="verl", max_groups_per_step=10)
    rollout(4)
    with pytest.raises(RuntimeError, match=r"only 0 were kept \(1\d with too few correct rollouts, 0 with too many"):
        buf.sample(global_steps=1, partition_id="train", batch_size=4)
    assert 10 <= len(rollout.dispatched) < 40  # it stopped early, not after exhausting the prompts
    with pytest.raises(ValueError, match="max_groups_per_step"):
        _buffer(rollout, max_groups_per_step=0)


def test_a_row_verl_keyed_as_index_0_is_refused(transfer_queue):
    # RLHFDataset gives a row without extra_info.index the index 0; crediting its group to prompt 0 would make
    # the tracker and the trainer's selection disagree, so the buffer names the group and stops.
    rollout = ScriptedRollout({7: [1, 0, 1, 0]}, order=[7], levels={7: 4}, without_index=True)
    buf = _buffer(rollout, gamma=4, refill="verl")
    rollout(1)
    with pytest.raises(ValueError, match=r"finished group .*: missing field 'extra_info.index' \(verl's RLHFDataset"):
        buf.sample(global_steps=1, partition_id="train", batch_size=1)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_validation_passes_through_unfiltered(transfer_queue, asynchronous):
    outcomes = {i: [1, 1] for i in range(3)}
    rollout = ScriptedRollout(outcomes, order=[0, 1, 2], levels={0: 4, 1: 4, 2: 4})
    buf = _buffer(rollout, asynchronous, gamma=2)
    for i in range(3):
        rollout.put_group(i, partition="val")
    meta, metrics = buf.sample(global_steps=1, partition_id="val", batch_size=3)
    assert len(meta.keys) == 6
    assert not any(k.startswith("training/taosr1_sampler") for k in metrics)
    assert buf.tracker.groups.sum() == 0 if len(buf.tracker) else True
    tq.kv_clear(keys=meta.keys, partition_id="val")


def test_planned_refill_and_class_balanced_batch(transfer_queue):
    # All informative; levels 4,4,4,4,4,4,3,2 in arrival order; one too-easy prompt first.
    outcomes = {0: [1, 1]} | {i: [1, 0] for i in range(1, 12)}
    levels = {0: 4, **{i: 4 for i in range(1, 7)}, 7: 3, 8: 2, 9: 1, 10: 4, 11: 4}
    rollout = ScriptedRollout(outcomes, order=list(range(12)), levels=levels)
    buf = _buffer(rollout, gamma=2, refill="planned", refill_margin=0.0)
    rollout(4)
    meta, metrics = buf.sample(global_steps=1, partition_id="train", batch_size=4)
    # verl would ask for 2 prompts for the evicted one; the planner (keep rate 3/4 observed) asks for 1..2.
    p = "training/taosr1_sampler"
    assert metrics[f"{p}/refill/verl_would_dispatch"] == 2
    assert 1 <= metrics[f"{p}/refill/dispatched"] <= 2
    assert len(meta.keys) == 4 * 2
    tq.kv_clear(keys=meta.keys, partition_id="train")

    # A second step with a surplus: the batch is chosen round-robin over gold levels.
    rollout.cursor = 5
    rollout(7)  # indices 5..11: levels 4,4,3,2,1,4,4
    meta, metrics = buf.sample(global_steps=2, partition_id="train", batch_size=4)
    batch = _batch_indices(meta)
    assert {7, 8, 9} <= set(batch) and sorted(levels[i] for i in batch) == [1, 2, 3, 4]
    assert metrics[f"{p}/class_mix_cv"] == 0.0
    assert metrics["training/filter_groups/discarded_surplus_samples"] == 3


def test_async_buffer_evicts_refills_one_for_one_and_keeps_the_surplus(transfer_queue):
    G = 4
    # Same scripted data as the sync test: 0-3 too easy, 4-5 too hard, 6-11 mixed; levels 4,3,2,1 repeating.
    outcomes = {i: [1] * G for i in range(4)} | {i: [0] * G for i in (4, 5)}
    outcomes |= {i: [1, 0, 1, 0] for i in range(6, 12)}
    levels = {i: (4, 3, 2, 1)[i % 4] for i in range(12)}
    rollout = ScriptedRollout(outcomes, order=list(range(12)), levels=levels, finish_after=0.05)
    buf = _buffer(rollout, asynchronous=True, gamma=4)
    p = "training/taosr1_sampler"
    try:
        rollout(6)  # warm-up batches: 0-5 are running, none will be kept
        # separate_async's prepare_step: poll until 4 groups are sampleable, evicting and refilling meanwhile.
        sampleable, evictions = buf.wait_for_sampleable(1, "train", 4)
        assert evictions["training/filter_groups/evicted_samples"] == 6
        assert rollout.dispatched == list(range(12))  # verl's async rule: one new prompt per evicted group
        meta, metrics = buf.sample(global_steps=1, partition_id="train", batch_size=4)
        batch = _batch_indices(meta)
        assert set(batch) <= set(range(6, 12)) and sorted(levels[i] for i in batch) == [1, 2, 3, 4]
        assert metrics[f"{p}/class_mix_cv"] == 0.0
        # Groups classified while the trainer polled, before sample(), are in this step's report.
        assert metrics[f"{p}/evicted/too_easy"] == 4 and metrics[f"{p}/evicted/too_hard"] == 2
        assert metrics[f"{p}/groups_kept"] == 6 and metrics[f"{p}/groups_finished"] == 12
        assert metrics[f"{p}/rollouts_trained"] == 4 * G
        assert metrics[f"{p}/tracker/groups_observed"] == 12 and metrics[f"{p}/tracker/prompts_seen"] == 12
        t = buf.tracker
        assert t.groups[:12].tolist() == [1] * 12 and t.succ[0] == G and t.fail[4] == G and t.succ[6] == 2
        assert t.level[:4].tolist() == [4, 3, 2, 1] and t.step == 1
        tq.kv_clear(keys=meta.keys, partition_id="train")

        # Unlike sync, the two kept groups beyond the batch stayed buffered: step 2 takes them, dispatching
        # nothing and classifying nothing new.
        meta, metrics = buf.sample(global_steps=2, partition_id="train", batch_size=2)
        assert sorted(batch + _batch_indices(meta)) == list(range(6, 12))
        assert rollout.dispatched == list(range(12)) and metrics[f"{p}/groups_finished"] == 0
        assert metrics[f"{p}/tracker/groups_observed"] == 12
        tq.kv_clear(keys=meta.keys, partition_id="train")
        assert not tq.kv_list("train").get("train")
    finally:
        for timer in rollout.timers:
            timer.join()
