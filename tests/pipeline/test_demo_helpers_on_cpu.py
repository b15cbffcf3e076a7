"""The demo's small deterministic helpers (the stages themselves run in the slow end-to-end test)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from taosr1_verl.pipeline.demo import _natural_mix


def test_natural_mix_follows_the_shares_on_a_balanced_pool():
    gold = [lv for lv in "1234" for _ in range(100)]  # class-balanced, like the RL set
    picked = _natural_mix(gold, {"4": 50, "2": 36, "1": 9, "3": 5}, 100)
    assert Counter(gold[i] for i in picked) == {"4": 50, "2": 36, "1": 9, "3": 5}
    assert picked == sorted(set(picked))
    assert _natural_mix(gold, {"4": 50, "2": 36, "1": 9, "3": 5}, 100) == picked  # deterministic


@given(st.lists(st.sampled_from("1234"), min_size=1, max_size=200),
       st.dictionaries(st.sampled_from("1234"), st.integers(1, 1000), min_size=1), st.integers(1, 300))
def test_natural_mix_never_repeats_and_keeps_every_label_it_can(gold, mix, k):
    picked = _natural_mix(gold, mix, k)
    assert len(picked) == len(set(picked)) and all(0 <= i < len(gold) for i in picked)
    assert {gold[i] for i in picked} == set(mix) & set(gold)

