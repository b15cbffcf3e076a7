"""SelectionPolicy: informative prompts first, skip-but-recheck, class balance, determinism, resume."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taosr1_verl.sampling import DifficultyTracker, GroupRule, PolicyConfig, RefillPlanner, SelectionPolicy


def _population(n=400, seed=0):
    rng = np.random.default_rng(seed)
    t = DifficultyTracker(n)
    kind = np.arange(n) % 4  # 0: solved, 1: hopeless, 2/3: in between
    correct = np.where(kind == 0, 40, np.where(kind == 1, 0, 20))
    t.update(np.arange(n), correct, 40)
    levels = rng.choice([4, 3, 2, 1], size=n, p=[0.5, 0.05, 0.36, 0.09])
    return t, kind, levels


def test_prefers_informative_prompts_and_skips_confident_ones():
    t, kind, _ = _population()
    p = SelectionPolicy(t, GroupRule(), PolicyConfig(recheck_prob=0.0, balance_classes=False), size=400)
    picked = np.concatenate([p.select(50) for _ in range(4)])
    assert set(kind[picked]) <= {2, 3}
    assert p.stats.skipped > 0


def test_skipped_prompts_are_rechecked_now_and_then():
    t, kind, _ = _population()
    p = SelectionPolicy(t, GroupRule(), PolicyConfig(recheck_prob=0.3, balance_classes=False), size=400)
    picked = np.concatenate([p.select(50) for _ in range(8)])
    assert np.isin(kind[picked], [0, 1]).any()
    assert p.stats.rechecked > 0


def test_faded_evidence_makes_old_verdicts_eligible_again():
    t = DifficultyTracker(100)
    t.update(np.arange(100), 64, 64, step=0)  # everything solved at step 0
    p = SelectionPolicy(t, GroupRule(), PolicyConfig(recheck_prob=0.0), size=100)
    assert p.keep_probability(np.arange(100)).max() < 0.2
    t.set_step(1000)
    assert p.keep_probability(np.arange(100)).min() > 0.5


def test_batches_are_class_balanced():
    t, _, levels = _population()
    p = SelectionPolicy(t, GroupRule(), PolicyConfig(), levels=levels)
    batch = p.select(64)
    counts = np.bincount(levels[batch], minlength=5)[1:]
    assert counts.tolist() == [16, 16, 16, 16]  # level 3 is 5 % of the data, still a quarter of the batch


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 70), window=st.floats(1.0, 6.0))
def test_same_seed_same_batches_and_resume_equality(seed, batch, window):
    t, _, levels = _population(120, seed % 7)
    cfg = PolicyConfig(seed=seed, window=window, temperature=0.5)
    a = SelectionPolicy(t, GroupRule(), cfg, levels=levels)
    b = SelectionPolicy(t, GroupRule(), cfg, levels=levels)
    first = [a.select(batch) for _ in range(3)]
    assert all(np.array_equal(x, b.select(batch)) for x in first)
    state = a.state_dict()
    after = [a.select(batch) for _ in range(3)]
    c = SelectionPolicy(t, GroupRule(), cfg, levels=levels)
    c.load_state_dict(state)
    assert all(np.array_equal(x, c.select(batch)) for x in after)
    assert all(len(x) == batch and x.min() >= 0 and x.max() < 120 for x in after)


def test_every_prompt_is_considered_once_per_pass():
    t = DifficultyTracker(50)
    p = SelectionPolicy(t, GroupRule(), PolicyConfig(window=1.0, balance_classes=False), size=50)
    seen = np.concatenate([p.select(10) for _ in range(5)])
    assert sorted(seen.tolist()) == list(range(50))  # unknown prompts all score the prior: none skipped


def test_state_from_another_config_is_refused():
    t, _, levels = _population(40)
    a = SelectionPolicy(t, GroupRule(), PolicyConfig(seed=1), levels=levels)
    b = SelectionPolicy(t, GroupRule(), PolicyConfig(seed=2), levels=levels)
    with pytest.raises(ValueError, match="config"):
        b.load_state_dict(a.state_dict())


@given(missing=st.integers(-5, 500), cap=st.integers(1, 600), rate=st.floats(0, 1))
def test_refill_planner_bounds(missing, cap, rate):
    planner = RefillPlanner(keep_rate=rate)
    n = planner.plan(missing, cap)
    assert 1 <= n <= cap
    if missing > 0 and cap >= missing / max(rate, planner.floor):
        assert n * max(rate, planner.floor) >= missing - 1e-6


def test_learn_shift_scores_a_prompt_trained_again_and_again_as_easier():
    # Two prompts with the same evidence (28 of 32 correct); prompt 0 was trained on 3 times after it.
    t2 = DifficultyTracker(2)
    t2.succ[:] = 28.0
    t2.fail[:] = 4.0
    t2.trained[:] = [3.0, 0.0]
    on = SelectionPolicy(t2, GroupRule(), PolicyConfig(group_size=16, learn_shift=0.2), size=2)
    off = SelectionPolicy(t2, GroupRule(), PolicyConfig(group_size=16, learn_shift=0.0), size=2)
    q_on, q_off = on.keep_probability([0, 1]), off.keep_probability([0, 1])
    assert q_off[0] == pytest.approx(q_off[1])
    assert q_on[0] < q_off[0]  # near the top of the band, easier means more likely all correct
    assert q_on[1] == pytest.approx(q_off[1])
    with pytest.raises(ValueError, match="learn_shift"):
        PolicyConfig(learn_shift=float("nan"))


def test_selections_are_those_of_the_unoptimised_policy():
    # Recorded with the policy before it scored each distinct belief once and all classes' first windows in
    # one call (commit d1fb359); the optimisations must not change a single choice.
    n = 3000
    i = np.arange(n)
    levels = np.array([4, 4, 2, 4, 1, 2, 4, 2, 3, 4])[i % 10]
    t = DifficultyTracker(n)
    t.update(i, (i * 7) % 6, 5, step=0)  # pass@5 seeds: six distinct beliefs
    out = []
    for temperature in (0.0, 1.0):
        cfg = PolicyConfig(group_size=8, temperature=temperature, seed=7)
        p = SelectionPolicy(t, GroupRule(), cfg, levels=levels)
        for step in range(1, 9):
            idx = p.select(96)
            out.append(idx)
            t.update(idx, (idx * 5 + step) % 9, 8, step=step)
    digest = hashlib.sha256(np.concatenate(out).astype(np.int64).tobytes()).hexdigest()[:16]
    assert digest == "abc83af90cbd9730"


def test_keep_probability_per_distinct_belief_equals_the_direct_one():
    t, _, levels = _population(400)
    t.update(np.arange(0, 400, 3), 5, 8, step=2)
    p = SelectionPolicy(t, GroupRule(), PolicyConfig(group_size=8), levels=levels)
    pos = np.random.default_rng(1).integers(0, 400, 1000)
    a, b = t.beta(p.keys[pos], learn_shift=p.config.learn_shift)
    assert np.array_equal(p.keep_probability(pos), GroupRule().keep_probability(8, a, b))
