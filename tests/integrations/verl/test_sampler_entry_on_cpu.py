"""How recipes reach the TaoSR1 sampler: verl's own loader for both path forms, kwargs, trainer registry."""

from __future__ import annotations

import pytest

pytest.importorskip("verl")


def test_both_recipe_forms_load_the_same_class():
    from pathlib import Path

    from verl.utils.import_utils import load_extern_type

    from taosr1_verl.integrations.verl.replay_buffer import TaoSR1ReplayBuffer

    by_pkg = load_extern_type("pkg://taosr1_verl.integrations.verl.replay_buffer", "TaoSR1ReplayBuffer")
    by_file = load_extern_type(str(Path(__file__).resolve().parents[3] / "samplers" / "taosr1_sampler.py"), "TaoSR1ReplayBuffer")
    assert by_pkg is TaoSR1ReplayBuffer
    assert by_file.__name__ == "TaoSR1ReplayBuffer" and by_file.__module__.endswith("replay_buffer")


def test_sampler_kwargs_are_checked():
    from taosr1_verl.integrations.verl.replay_buffer import TaoSR1ReplayBuffer, parse_sampler_kwargs

    rule, tracker_cfg, opts = parse_sampler_kwargs(
        {"train_batch_size": 8, "low": 0.01, "high": 0.9, "half_life": None, "policy": {"window": 3}}
    )
    assert rule.bounds(16) == (1, 14) and tracker_cfg.half_life is None and opts.policy == {"window": 3}
    with pytest.raises(ValueError, match="unknown trainer.v1.sampler.sampler_kwargs"):
        parse_sampler_kwargs({"train_batch_size": 8, "gama": 3})
    with pytest.raises(ValueError, match="refill"):
        parse_sampler_kwargs({"refill": "double"})
    with pytest.raises(ValueError, match="train_batch_size"):
        TaoSR1ReplayBuffer("sync", {}, None, "drop", {}, refill_fn=lambda n: n)


def test_trainer_is_registered_and_reads_the_rl_parquet(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    from verl.trainer.ppo.v1 import get_trainer_cls

    from taosr1_verl.integrations.verl.trainer import TRAINER_MODE, TaoSR1SyncTrainer, dataset_keys_and_levels

    assert get_trainer_cls(TRAINER_MODE) is TaoSR1SyncTrainer
    path = tmp_path / "rl.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"data_source": "s", "extra_info": {"index": 2, "level": 3}, "reward_model": {"ground_truth": "3"}},
        {"data_source": "s", "extra_info": {"index": 0, "level": None}, "reward_model": {"ground_truth": "1"}},
        {"data_source": "s", "extra_info": {"index": 1, "level": None}, "reward_model": {"ground_truth": "?"}},
    ]), path)
    frame = datasets.load_dataset("parquet", data_files=str(path))["train"]
    keys, levels = dataset_keys_and_levels(frame)
    assert keys.tolist() == [2, 0, 1]
    assert levels.tolist() == [3, 1, -1]  # "?" is not a label: a class of its own
    # A row without extra_info.index: verl's RLHFDataset keys it as 0, the policy would have used its position.
    pq.write_table(pa.Table.from_pylist([
        {"data_source": "s", "extra_info": {"index": 2}, "reward_model": {"ground_truth": "3"}},
        {"data_source": "s", "extra_info": {"split": "train"}, "reward_model": {"ground_truth": "1"}},
    ]), tmp_path / "no_index.parquet")
    frame = datasets.load_dataset("parquet", data_files=str(tmp_path / "no_index.parquet"))["train"]
    with pytest.raises(ValueError, match=r"train dataset row 1: missing field 'extra_info.index' \(verl's RLHFDataset"):
        dataset_keys_and_levels(frame)


def test_verl_constructor_keywords_stand_for_their_sampler_kwargs():
    from taosr1_verl.integrations.verl.replay_buffer import TaoSR1ReplayBuffer, TaoSR1ReplayBufferAsync

    # Built the way verl builds its own buffer (no TransferQueue needed to construct one).
    rb = TaoSR1ReplayBuffer("sync", {}, None, "drop", {}, refill_fn=lambda n: n, filter_groups_metric="score",
                            train_batch_size=4, gen_batch_size=None, max_inflight_gen_batches=2)
    assert (rb.filter_groups_metric, rb.rule.metric, rb.train_batch_size, rb.gen_batch_size) == ("score", "score", 4, 1)
    assert rb.refill_fn == rb._planned_refill and rb.max_inflight_gen_batches == 2
    # None turns the filter off, as in verl: no refill wrapper, no train_batch_size needed.
    off = TaoSR1ReplayBuffer("sync", {}, None, "drop", {}, filter_groups_metric=None)
    assert off.filter_groups_metric is None and off.refill_fn is None
    assert TaoSR1ReplayBufferAsync("separate_async", {}, 2, "drop", {"metric": None}).filter_groups_metric is None
    with pytest.raises(ValueError, match="filter_groups_metric='acc' contradicts .*sampler_kwargs.metric='score'"):
        TaoSR1ReplayBuffer("sync", {}, None, "drop", {"metric": "score"}, refill_fn=lambda n: n,
                           filter_groups_metric="acc", train_batch_size=4)
    std = TaoSR1ReplayBuffer("sync", {}, None, "drop", {"metric": "reward", "rule": "std_zero", "gamma": None,
                                                        "refill": "verl", "train_batch_size": 2}, refill_fn=print)
    assert std.rule.kind == "std_zero" and std.filter_groups_metric == "reward" and std.refill_fn is print
