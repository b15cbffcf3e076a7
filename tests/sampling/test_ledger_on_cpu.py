"""GroupLedger and GroupRule.classify_values: the replay buffer's group accounting without Ray or verl.

verl's own filter (``ReplayBuffer._dapo_filtered_keys`` in verl 0.9.1) evicts a group when
``len(values) > 1 and float(np.std(values)) == 0.0`` and reports ``float(values[0])`` for it; ``_verl_rule``
below is that line, the reference the property tests hold the std-zero rule to. The slow tests in
tests/integrations/verl/test_replay_buffer_verl_parity_on_cpu.py compare against verl's real buffer.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taosr1_verl.sampling import (
    KEPT,
    TOO_EASY,
    TOO_HARD,
    DifficultyTracker,
    GroupBudgetExceeded,
    GroupLedger,
    GroupRule,
    RefillPlanner,
    TrackerConfig,
)


def _verl_rule(values: list[float]) -> float | None:
    """verl 0.9.1's classification of one group: None = kept, else the value its breakdown counts."""
    return float(values[0]) if len(values) > 1 and float(np.std(values)) == 0.0 else None


# Values a reward produces: 0/1 accuracy, a malformed penalty, partial credit, inexact decimals, untrusted.
VALUES = st.sampled_from([0.0, 1.0, -1.0, 0.5, 0.1, 0.6, 0.9, 0.7, 2.7, 3.0, float("nan"), float("inf")])
GROUPS = st.lists(st.lists(VALUES, min_size=1, max_size=9), min_size=1, max_size=30)


def _ledger(rule: GroupRule | None = None, **kw) -> GroupLedger:
    return GroupLedger(rule or GroupRule(), DifficultyTracker(0, TrackerConfig(half_life=None)), **kw)


def _add(ledger: GroupLedger, groups: list[list[float]], indices=None, levels=None) -> list[float | None]:
    uids = [f"g{i}" for i in range(len(groups))]
    return ledger.add(uids, groups, indices if indices is not None else list(range(len(groups))),
                      levels if levels is not None else [-1] * len(groups))


@settings(max_examples=300, deadline=None)
@given(GROUPS)
def test_std_zero_rule_is_verls_rule_on_raw_values(groups):
    assert _add(_ledger(GroupRule.std_zero()), groups) == [_verl_rule(g) for g in groups]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, 1.0]), min_size=1, max_size=16), min_size=1, max_size=30))
def test_default_band_equals_verl_on_binary_values_groups_of_one_included(groups):
    assert _add(_ledger(GroupRule()), groups) == [_verl_rule(g) for g in groups]


def test_groups_of_one_are_kept_by_every_rule():
    # rollout.n = 1: verl never filters such a group; before, the band kept nothing and refilled forever.
    for rule in (GroupRule(), GroupRule.taosr1(gamma=2), GroupRule.pass_rate_band(0.2, 0.8), GroupRule.std_zero()):
        assert _add(_ledger(rule), [[0.0], [1.0], [-1.0]]) == [None, None, None]
        assert rule.bounds(1) == (0, 1)
        assert float(rule.keep_probability(1, 0.3)) == pytest.approx(1.0)


def test_continuous_values_under_both_rules():
    groups = [[0.6, 0.9], [-1.0, 0.0], [-1.0, -1.0], [0.1, 0.1, 0.1], [0.5, 0.5]]
    # verl (std-zero): only the all -1 and all 0.5 groups are constant (3 x 0.1 has a rounding std).
    out = _ledger(GroupRule.std_zero(metric="score")).rule.classify_values(sum(groups, []), [len(g) for g in groups])
    assert out.codes.tolist() == [KEPT, KEPT, TOO_HARD, KEPT, TOO_EASY]
    assert out.filtered_values() == [_verl_rule(g) for g in groups]
    # The band reads values through the threshold: 0.6 and 0.9 are both correct, -1 and 0 both wrong.
    band = GroupRule(metric="score").classify_values(sum(groups, []), [len(g) for g in groups])
    assert band.codes.tolist() == [TOO_EASY, TOO_HARD, TOO_HARD, TOO_HARD, TOO_EASY]
    # A constant group reports its shared value, as verl; a non-constant evicted one its pass rate.
    assert band.filtered_values() == [1.0, 0.0, -1.0, 0.0, 0.5]
    # The threshold is a setting: at 0.75 the 0.6/0.9 group has one correct rollout of two, and is kept.
    assert GroupRule(metric="score", threshold=0.75).classify_values([0.6, 0.9], [2]).codes.tolist() == [KEPT]


def test_band_warns_once_about_non_binary_values(caplog):
    ledger = _ledger(GroupRule(metric="score"))
    with caplog.at_level(logging.WARNING, logger="taosr1_verl.sampling.ledger"):
        _add(ledger, [[0.6, 0.9]])
        _add(ledger, [[0.2, 0.3]])
    warnings = [r for r in caplog.records if "std_zero" in r.getMessage()]
    assert len(warnings) == 1 and "threshold 0.5" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="taosr1_verl.sampling.ledger"):
        _add(_ledger(GroupRule.std_zero()), [[0.6, 0.9]])
    assert not caplog.records


@settings(max_examples=150, deadline=None)
@given(groups=GROUPS, data=st.data())
def test_accounting_is_conserved(groups, data):
    rule = data.draw(st.sampled_from([GroupRule(), GroupRule.std_zero(), GroupRule.taosr1(3),
                                      GroupRule.pass_rate_band(0.25, 0.75)]))
    has_index = data.draw(st.lists(st.booleans(), min_size=len(groups), max_size=len(groups)))
    indices = [i if keep else None for i, keep in enumerate(has_index)]
    levels = data.draw(st.lists(st.sampled_from([-1, 1, 2, 3, 4]), min_size=len(groups), max_size=len(groups)))
    ledger = _ledger(rule, class_levels=(4, 3, 2, 1))
    filtered = _add(ledger, groups, indices, levels)
    t = ledger.tally
    # Every group is counted once, under one outcome; kept exactly when verl's cache would hold None.
    assert t.finished == len(groups) and t.kept == filtered.count(None)
    assert t.rollouts == sum(map(len, groups)) and t.pass_rate_hist.sum() == len(groups)
    assert t.without_index == has_index.count(False)
    # The tracker saw exactly the groups with an index, with their counts.
    tr = ledger.tracker
    assert tr.groups_observed == sum(has_index)
    for i, g in enumerate(groups):
        rec = ledger.records[f"g{i}"]
        assert (rec.outcome == KEPT) == (filtered[i] is None) and rec.rollouts == len(g)
        assert rec.correct == rule.count_correct(g) and rec.level == levels[i]
        if has_index[i]:
            assert tr.succ[i] == rec.correct and tr.fail[i] == len(g) - rec.correct and tr.level[i] == levels[i]
    m = ledger.metrics(batch_rollouts=0)
    assert m["groups_finished"] == len(groups)
    assert m["groups_kept"] + m["evicted/too_hard"] + m["evicted/too_easy"] == len(groups)
    assert m["rule/std_zero"] == float(rule.kind == "std_zero")


def test_retain_forgets_groups_that_left_and_balanced_batches():
    ledger = _ledger(class_levels=(4, 3, 2, 1))
    _add(ledger, [[1, 0]] * 6, levels=[4, 4, 4, 3, 2, 4])
    # Round-robin over levels, verl's (oldest first) order within a level.
    chosen = ledger.balanced([f"g{i}" for i in range(6)], 4)
    assert chosen == ["g0", "g3", "g4", "g1"]
    m = ledger.metrics(batch_rollouts=8)
    assert (m["class_mix/level_4"], m["class_mix/level_3"], m["class_mix/level_2"], m["class_mix/level_1"]) == (2, 1, 1, 0)
    assert ledger.balanced(["g5", "g0"], 4) == ["g5", "g0"]  # fewer than the batch: all, in order
    assert ledger.balanced([f"g{i}" for i in range(6)], 3, balance=False) == ["g0", "g1", "g2"]
    ledger.retain({"g1", "g2"})
    assert set(ledger.records) == {"g1", "g2"} and ledger.level_of("g0") == -1
    ledger.end_step()
    assert ledger.tally.finished == 0 and ledger.metrics(0)["class_mix_cv"] == 0.0


def test_group_budget_stops_a_step_of_constant_groups():
    ledger = _ledger(max_groups_per_step=4)
    _add(ledger, [[0, 0]] * 3)
    ledger.check_budget(batch_size=2)  # 3 finished: under the limit
    ledger.add(["x"], [[1, 1]], [None], [-1])
    with pytest.raises(GroupBudgetExceeded, match=r"4 groups finished this step and only 0 were kept "
                                                  r"\(3 with too few correct rollouts, 1 with too many"):
        ledger.check_budget(batch_size=2)
    ledger.add(["y", "z"], [[0, 1], [1, 0]], [None, None], [-1, -1])
    ledger.check_budget(batch_size=2)  # the batch can be filled: no error
    with pytest.raises(ValueError, match="max_groups_per_step"):
        _ledger(max_groups_per_step=0)


def test_planned_refill_is_tallied_against_verls_count():
    ledger = _ledger()
    assert ledger.plan_refill(count=16, target=8, sampleable=2, inflight=0, granularity=4) == 16
    ledger.planner.keep_rate = 0.9
    assert ledger.plan_refill(count=16, target=8, sampleable=2, inflight=0, granularity=4) == 8
    m = ledger.metrics(0)
    assert m["refill/dispatched"] == 24 and m["refill/verl_would_dispatch"] == 32


@settings(max_examples=300, deadline=None)
@given(count=st.integers(1, 64), target=st.integers(1, 64), sampleable=st.integers(0, 64), inflight=st.integers(0, 64),
       granularity=st.integers(1, 8), keep=st.floats(0.0, 1.0))
def test_dispatch_stays_within_verls_count_and_covers_the_batch(count, target, sampleable, inflight, granularity, keep):
    want = RefillPlanner(keep_rate=keep).dispatch(count, target, sampleable, inflight, granularity)
    assert 1 <= want <= count
    assert want % granularity == 0 or want == count
    # Enough to fill the batch if every in-flight and dispatched group were kept (as far as verl allows).
    cover = max(0, target - sampleable - inflight)
    assert want >= min(cover, count)


def test_bad_inputs_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="2 uids, 1 value lists"):
        _ledger().add(["a", "b"], [[1.0]], [0, 1], [-1, -1])
    with pytest.raises(ValueError, match="every group needs >= 1 value"):
        GroupRule().classify_values([1.0], [1, 0])
    with pytest.raises(ValueError, match="takes no band"):
        GroupRule.from_config({"rule": "std_zero", "gamma": 4})
    with pytest.raises(ValueError, match="unknown group rule 'stdzero'"):
        GroupRule.from_config({"rule": "stdzero"})
    with pytest.raises(ValueError, match="threshold must be finite"):
        GroupRule(threshold=float("nan"))
    assert GroupRule.from_config({"rule": "std_zero", "gamma": None, "threshold": 0.7}) == GroupRule.std_zero(
        threshold=0.7)
    assert _ledger().add([], [], [], []) == []


def test_std_zero_keep_probability_is_the_binary_band():
    # The policy scores prompts under a 0/1 reading: a constant group is all wrong or all right.
    assert GroupRule.std_zero().bounds(8) == GroupRule().bounds(8) == (1, 7)
    assert float(GroupRule.std_zero().keep_probability(8, 0.5)) == pytest.approx(1 - 2 / 256)
    assert TOO_EASY != TOO_HARD
