"""The latency model: expected latency is exact for one-hot choices, differentiable, and round-trips."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taosr1_verl.autofas.features import FeatureConfig, field_specs
from taosr1_verl.autofas.latency import LatencyTable, measure_latency_table
from taosr1_verl.autofas.space import SKIP, Architecture, SearchSpace

SPACE = SearchSpace(widths=(8, 16), n_layers=3)
FIELDS = ["a", "b", "c"]


def _table(seed: int = 0) -> LatencyTable:
    rng = random.Random(seed)
    w = [str(x) for x in SPACE.widths]
    return LatencyTable(
        batch_size=64, threads=1, backend="given",
        field_us={f: rng.uniform(0, 3) for f in FIELDS}, field_dims={"a": 4, "b": 2, "c": 6},
        first_us={x: (rng.uniform(0, 1), rng.uniform(0, 0.1)) for x in w},
        hidden_us={f"{i}->{o}": rng.uniform(0, 1) for i in w for o in w},
        head_us={x: rng.uniform(0, 1) for x in w}, base_us=0.3, extract_us={"a": 1.5},
    )


def _by_hand(t: LatencyTable, arch: Architecture) -> float:
    """The latency of the discrete network, summed block by block."""
    us = t.base_us + sum(t.field_cost(f) for f in arch.fields)
    d_in = sum(t.field_dims[f] for f in arch.fields)
    a, b = t.first_us[str(arch.ops[0])]
    us += a + b * d_in
    width = int(arch.ops[0])
    for op in arch.ops[1:]:
        if op != SKIP:
            us += t.hidden_us[f"{width}->{op}"]
            width = int(op)
    return us + t.head_us[str(width)]


@settings(max_examples=50, deadline=None)
@given(keep=st.lists(st.booleans(), min_size=3, max_size=3).filter(any),
       ops=st.tuples(st.sampled_from(SPACE.ops(0)), st.sampled_from(SPACE.ops(1)), st.sampled_from(SPACE.ops(2))),
       seed=st.integers(0, 100))
def test_discrete_latency_matches_block_sum(keep: list[bool], ops: tuple, seed: int) -> None:
    t = _table(seed)
    arch = Architecture(tuple(f for f, k in zip(FIELDS, keep, strict=True) if k), ops)
    assert t.discrete(arch, SPACE) == pytest.approx(_by_hand(t, arch), rel=1e-9)


def test_expected_latency_is_the_expectation_over_architectures() -> None:
    t = _table(1)
    torch.manual_seed(0)
    p = torch.sigmoid(torch.randn(3, dtype=torch.float64))
    pis = [torch.softmax(torch.randn(len(SPACE.ops(i)), dtype=torch.float64), -1) for i in range(3)]
    exact = 0.0
    import itertools

    for keep in itertools.product([0, 1], repeat=3):
        pk = float(torch.prod(torch.where(torch.tensor(keep, dtype=torch.bool), p, 1 - p)))
        fields = tuple(f for f, k in zip(FIELDS, keep, strict=True) if k)
        for ks in itertools.product(*[range(len(SPACE.ops(i))) for i in range(3)]):
            po = float(torch.prod(torch.stack([pis[i][k] for i, k in enumerate(ks)])))
            ops = tuple(SPACE.ops(i)[k] for i, k in enumerate(ks))
            if fields:
                exact += pk * po * t.discrete(Architecture(fields, ops), SPACE)
            else:
                # No field kept: only the blocks after the features cost anything.
                exact += pk * po * (t.discrete(Architecture(("a",), ops), SPACE) - t.field_cost("a")
                                    - t.first_us[str(ops[0])][1] * t.field_dims["a"])
    assert float(t.expected(FIELDS, p, SPACE, pis)) == pytest.approx(exact, rel=1e-9)


def test_expected_latency_is_differentiable_and_penalises_costly_fields() -> None:
    t = _table(2)
    logits = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    alphas = [torch.zeros(len(SPACE.ops(i)), dtype=torch.float64, requires_grad=True) for i in range(3)]
    lat = t.expected(FIELDS, torch.sigmoid(logits), SPACE, [torch.softmax(a, -1) for a in alphas])
    lat.backward()
    grads = logits.grad.tolist()
    assert all(g > 0 for g in grads)
    costs = [t.field_cost(f) + t.first_us["8"][1] * t.field_dims[f] for f in FIELDS]
    assert sorted(range(3), key=lambda i: grads[i]) == sorted(range(3), key=lambda i: costs[i])
    assert all(a.grad is not None for a in alphas)


def test_save_load_roundtrip(tmp_path) -> None:
    t = _table(3)
    t.save(tmp_path / "lut.json")
    u = LatencyTable.load(tmp_path / "lut.json")
    arch = Architecture(("a", "c"), (16, SKIP, 8))
    assert u.discrete(arch, SPACE) == pytest.approx(t.discrete(arch, SPACE))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        LatencyTable.load(tmp_path / "bad.json")


def test_measured_table_on_this_machine_is_complete_and_ordered() -> None:
    cfg = FeatureConfig(n_buckets=256, embed_dim=8)
    specs = field_specs(cfg)
    space = SearchSpace(widths=(8, 64), n_layers=2)
    t = measure_latency_table(specs, cfg, space, n_levels=4, batch_size=256, backend="torch", repeats=3)
    assert t.covers([s.name for s in specs], space)
    assert all(v >= 0 for v in t.field_us.values()) and t.base_us > 0
    big = Architecture(tuple(s.name for s in specs), (64, 64))
    small = Architecture(("price",), (8, SKIP))
    # Every block of the small network is also in the big one, so it can only be cheaper.
    assert t.discrete(small, space) < t.discrete(big, space)
