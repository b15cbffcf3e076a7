"""The demo's small deterministic helpers (the stages themselves run in the slow end-to-end test)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taosr1_verl.pipeline.demo import PROFILES, grpo_overrides, natural_mix
from taosr1_verl.pipeline.stages import RECORD, StageContext


def test_natural_mix_follows_the_shares_on_a_balanced_pool():
    gold = [lv for lv in "1234" for _ in range(100)]  # class-balanced, like the RL set
    picked = natural_mix(gold, {"4": 50, "2": 36, "1": 9, "3": 5}, 100)
    assert Counter(gold[i] for i in picked) == {"4": 50, "2": 36, "1": 9, "3": 5}
    # 32 prompts (the quick profile): shares 16 / 11.52 / 2.88 / 1.6 -> largest remainders
    small = Counter(gold[i] for i in natural_mix(gold, {"4": 50, "2": 36, "1": 9, "3": 5}, 32))
    assert small == {"4": 16, "2": 11, "1": 3, "3": 2}
    assert picked == sorted(set(picked))
    assert natural_mix(gold, {"4": 50, "2": 36, "1": 9, "3": 5}, 100) == picked  # deterministic


@given(st.lists(st.sampled_from("1234"), min_size=1, max_size=200),
       st.dictionaries(st.sampled_from("1234"), st.integers(1, 1000), min_size=1), st.integers(1, 300))
def test_natural_mix_never_repeats_and_keeps_every_label_it_can(gold, mix, k):
    picked = natural_mix(gold, mix, k)
    assert len(picked) == len(set(picked)) and all(0 <= i < len(gold) for i in picked)
    available = sum(1 for g in gold if g in mix)
    assert len(picked) == min(k, available)  # exactly k unless the rows run out
    labels = set(mix) & set(gold)
    if k >= len(labels):
        assert {gold[i] for i in picked} == labels



@pytest.mark.parametrize("sampler", ["taosr1", "verl"])
def test_demo_grpo_overrides_compose_validate_and_select_the_sampler(tmp_path, tiny_model_dir, sampler):
    from taosr1_verl.integrations.verl.recipes import compose_recipe, validate_recipe

    for name in ("data", "passn"):  # the stages grpo reads from
        (tmp_path / name).mkdir()
        (tmp_path / name / RECORD).write_text("{}")
    ctx = StageContext(tmp_path, {"profile": asdict(PROFILES["quick"]), "seed": 0, "sampler": sampler})
    cfg = compose_recipe("grpo", grpo_overrides(ctx, tmp_path / "grpo", Path(tiny_model_dir), sampler), device="cpu")
    validate_recipe("grpo", cfg)
    if sampler == "verl":  # verl's own std-zero filter on the same metric, verl's random loader
        assert cfg.algorithm.filter_groups.enable is True and cfg.algorithm.filter_groups.metric == "acc"
        assert cfg.trainer.v1.sampler.custom_sampler.path is None and cfg.trainer.v1.trainer_mode == "sync"
    else:  # ours applies the rule itself; verl's filter stays off
        assert cfg.algorithm.filter_groups.enable is False
        assert cfg.trainer.v1.sampler.custom_sampler.name == "TaoSR1ReplayBuffer"
        assert cfg.trainer.v1.sampler.sampler_kwargs.passn_path.endswith("difficulty.parquet")
    with pytest.raises(ValueError, match="unknown sampler"):
        grpo_overrides(ctx, tmp_path / "grpo", Path(tiny_model_dir), "nope")
