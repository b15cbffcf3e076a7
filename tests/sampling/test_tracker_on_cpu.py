"""DifficultyTracker: counts, recency weighting, pass@N seeding, state round trips, memory."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taosr1_verl.sampling import DifficultyTracker, TrackerConfig


def test_update_counts_and_estimates():
    t = DifficultyTracker(3, TrackerConfig(half_life=None))
    t.update([0, 0, 1], correct=[8, 4, 0], n=8, step=1)
    assert t.groups.tolist() == [2, 1, 0]
    assert t.succ[0] == 12 and t.fail[0] == 4
    assert t.pass_rate([0, 1, 2]).tolist() == pytest.approx([13 / 18, 1 / 10, 0.5])
    assert t.uncertainty([2])[0] > t.uncertainty([0])[0]


def test_old_evidence_fades_toward_the_prior():
    t = DifficultyTracker(1, TrackerConfig(half_life=10))
    t.update([0], 16, 16, step=0)
    fresh = t.pass_rate([0], step=0)[0]
    old = t.pass_rate([0], step=100)[0]
    assert fresh > 0.9 and abs(old - 0.5) < 0.05
    t.update([0], 0, 16, step=10)  # the earlier 16/16 now weighs 8
    assert t.succ[0] == pytest.approx(8.0) and t.fail[0] == 16


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 16), st.integers(0, 16)), min_size=1, max_size=60))
def test_without_fading_counts_are_exact_sums(groups):
    t = DifficultyTracker(0, TrackerConfig(half_life=None))
    idx = [i for i, _, _ in groups]
    n = [g for _, g, _ in groups]
    c = [min(k, g) for _, g, k in groups]
    t.update(idx, c, n)
    succ = np.zeros(31)
    fail = np.zeros(31)
    np.add.at(succ, idx, c)
    np.add.at(fail, idx, np.array(n) - np.array(c))
    assert np.allclose(t.succ, succ[: len(t)]) and np.allclose(t.fail, fail[: len(t)])
    assert t.groups.sum() == len(groups)


def test_seed_from_passn_accounts_for_every_row(tmp_path):
    path = tmp_path / "passn.parquet"
    pq.write_table(pa.table({
        "index": [0, 1, 2, 3, -1, 5, 2],
        "n": [5, 5, 5, 0, 5, 5, 5],
        "correct": [5, 0, 3, 0, 1, 9, 4],
        "pass_rate": [1.0, 0.0, 0.6, 0.0, 0.2, 1.8, 0.8],
    }), path)
    t = DifficultyTracker()
    report = t.seed_from_passn(path)
    assert report.rows == 7
    assert report.seeded + sum(report.dropped.values()) == 7
    assert report.dropped == {"index: negative": 1, "n: not positive": 1, "correct: outside [0, n]": 1,
                              "index: duplicate (last row kept)": 1}
    assert t.succ[:3].tolist() == [5, 0, 4] and t.fail[:3].tolist() == [0, 5, 1]


def test_seed_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"index": [0], "n": [5]}), path)
    with pytest.raises(ValueError, match=r"bad\.parquet.*correct"):
        DifficultyTracker().seed_from_passn(path)
    with pytest.raises(FileNotFoundError):
        DifficultyTracker().seed_from_passn(tmp_path / "missing.parquet")


def test_state_round_trip_and_file(tmp_path):
    t = DifficultyTracker(5, TrackerConfig(half_life=7.0))
    t.update([1, 4], [3, 0], 4, step=3, levels=[2, 4])
    u = DifficultyTracker()
    u.load_state_dict(t.state_dict())
    assert u.config == t.config and u.step == 3
    for name in ("succ", "fail", "last_step", "groups", "level", "trained"):
        assert np.array_equal(getattr(u, name), getattr(t, name))
    t.save(tmp_path / "t.npz")
    v = DifficultyTracker.load(tmp_path / "t.npz")
    assert np.array_equal(v.pass_rate(range(5)), t.pass_rate(range(5)))


def test_ten_million_prompts_fit_in_200_mb():
    assert DifficultyTracker(10_000_000).nbytes < 200 * 2**20


def test_bad_indices_are_rejected():
    with pytest.raises(ValueError, match="negative"):
        DifficultyTracker().update([-1], 1, 2)
    with pytest.raises(ValueError, match="max_index"):
        DifficultyTracker(0, TrackerConfig(max_index=10)).update([11], 1, 2)
    with pytest.raises(ValueError, match="correct <= n"):
        DifficultyTracker().update([0], 3, 2)


def test_trained_counts_groups_with_signal_after_the_evidence():
    t = DifficultyTracker(4, TrackerConfig(half_life=None))
    t.update([0, 1, 2], [4, 0, 8], 8, step=1)  # only prompt 0's group has signal (GRPO trains on it)
    assert t.trained[:3].tolist() == [1.0, 0.0, 0.0]
    t.update([0], 8, 8, step=2)  # 8 new rollouts, none trained on after: half the evidence saw 1 training
    assert float(t.trained[0]) == pytest.approx(0.5)
    t.update([0, 0], [3, 5], 8, step=3)  # two groups with signal in one call: both count
    assert float(t.trained[0]) == pytest.approx(0.5 * 16 / 32 + 2, rel=1e-3)


def test_learn_shift_moves_the_mean_up_and_keeps_the_strength():
    t = DifficultyTracker(3)
    t.update([0, 1, 2], [6, 16, 6], 16, step=1)  # 0 has signal, 1 is all-correct
    t.update([2], 16, 16, step=1)  # 2: trained once, then seen again
    a0, b0 = t.beta([0, 1, 2])
    a1, b1 = t.beta([0, 1, 2], learn_shift=0.5)
    np.testing.assert_allclose(a1 + b1, a0 + b0)
    assert a1[0] > a0[0] and a1[1] == a0[1]  # a one-sided record has no log-odds to move
    # The evidence's log-odds move by learn_shift * trained exactly.
    ev = lambda a, b: np.log((a - 1.0) / (b - 1.0))  # noqa: E731 (prior Beta(1, 1))
    assert ev(a1[0], b1[0]) - ev(a0[0], b0[0]) == pytest.approx(0.5)
    assert ev(a1[2], b1[2]) - ev(a0[2], b0[2]) == pytest.approx(0.5 * float(t.trained[2]))
    assert t.pass_rate([0], learn_shift=0.0) == pytest.approx(t.pass_rate([0]))


def test_seeding_resets_trained(tmp_path):
    t = DifficultyTracker(3)
    t.update([0], 4, 8, step=1)
    path = tmp_path / "passn.parquet"
    pq.write_table(pa.table({"index": [0], "n": [5], "correct": [2]}), path)
    t.seed_from_passn(path)
    assert float(t.trained[0]) == 0.0


def test_state_round_trip_keeps_trained_and_old_states_still_load():
    t = DifficultyTracker(5)
    t.update([1, 2, 3], [3, 0, 2], 4, step=3)
    sd = t.state_dict()
    u = DifficultyTracker()
    u.load_state_dict(sd)
    assert np.array_equal(u.trained, t.trained) and u.trained.dtype == np.float16
    old = {k: v for k, v in sd.items() if k != "trained"}  # saved before the array existed
    v = DifficultyTracker()
    v.load_state_dict(old)
    assert np.array_equal(v.succ, t.succ) and not v.trained.any() and v.trained.shape == t.trained.shape


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 40), min_size=1, max_size=30), min_size=1, max_size=6))
def test_counters_follow_the_groups_table_and_survive_state(batches):
    t = DifficultyTracker(0)
    for step, idx in enumerate(batches):
        t.update(idx, 1, 2, step=step)
        assert t.groups_observed == int(t.groups.sum()) and t.prompts_seen == int(np.count_nonzero(t.groups))
    u = DifficultyTracker()
    u.load_state_dict(t.state_dict())
    assert (u.groups_observed, u.prompts_seen) == (t.groups_observed, t.prompts_seen)
    old = {k: v for k, v in t.state_dict().items() if k not in ("groups_observed", "prompts_seen")}
    v = DifficultyTracker()
    v.load_state_dict(old)  # saved before the counters existed: derived once from the table
    assert (v.groups_observed, v.prompts_seen) == (t.groups_observed, t.prompts_seen)


def test_counters_stop_where_the_group_count_saturates(tmp_path):
    t = DifficultyTracker(2)
    t.groups[0] = 65534
    t.recount()
    t.update([0, 0, 0, 1], 1, 2)
    assert t.groups.tolist() == [65535, 1]
    assert (t.groups_observed, t.prompts_seen) == (65536, 2)
    t.save(tmp_path / "t.npz")
    assert DifficultyTracker.load(tmp_path / "t.npz").groups_observed == 65536


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), size=st.integers(0, 300), shift=st.sampled_from([0.0, 0.3]))
def test_same_beliefs_give_the_same_numbers_bit_for_bit(seed, size, shift):
    rng = np.random.default_rng(seed)
    t = DifficultyTracker(50, TrackerConfig(half_life=5.0))
    for step in range(4):  # few distinct beliefs, many prompts sharing each
        idx = rng.integers(0, 50, 20)
        t.update(idx, rng.integers(0, 3, 20), 2, step=step)
    t.set_step(6)
    idx = rng.integers(0, 50, size)
    rep, inverse = t.same_beliefs(idx)
    assert rep.size <= min(size, 50)  # shared: at most one per prompt
    for got, want in zip(t.beta(rep, learn_shift=shift), t.beta(idx, learn_shift=shift), strict=True):
        assert np.array_equal(got[inverse], want)
