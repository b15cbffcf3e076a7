"""Mixed-operator and feature-gate mechanics of the supernet."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from taosr1_verl.autofas.features import FeatureConfig, field_specs
from taosr1_verl.autofas.space import SKIP, Architecture, FieldGates, MixedOp, SearchSpace, SuperNet


def test_one_hot_weights_select_one_operator() -> None:
    torch.manual_seed(0)
    op = MixedOp(8, (4, 8, SKIP), 8)
    x = torch.randn(5, 8)
    for k, choice in enumerate(op.ops):
        w = F.one_hot(torch.tensor(k), 3).float()
        y = op(x, w)
        if choice == SKIP:
            torch.testing.assert_close(y, x)
        else:
            ref = torch.relu(op.linears[k](x))
            torch.testing.assert_close(y[:, : int(choice)], ref)
            assert torch.all(y[:, int(choice):] == 0)  # narrower outputs are zero-padded


def test_mixture_is_the_weighted_sum() -> None:
    torch.manual_seed(0)
    op = MixedOp(8, (4, 8, SKIP), 8)
    x = torch.randn(3, 8)
    w = torch.tensor([0.2, 0.3, 0.5])
    parts = [op(x, F.one_hot(torch.tensor(k), 3).float()) for k in range(3)]
    torch.testing.assert_close(op(x, w), sum(wk * p for wk, p in zip(w, parts, strict=True)))


def test_skip_needs_equal_widths() -> None:
    with pytest.raises(ValueError, match="skip"):
        MixedOp(6, (4, SKIP), 8)


def test_gates_relaxed_and_hard() -> None:
    g = FieldGates(3)
    with torch.no_grad():
        g.logits.copy_(torch.tensor([5.0, -5.0, 0.5]))
    assert g(1.0, hard=True).tolist() == [1.0, 0.0, 1.0]
    torch.manual_seed(0)
    soft = torch.stack([g(0.3) for _ in range(200)])
    assert ((soft >= 0) & (soft <= 1)).all()
    # Empirical keep rate follows sigmoid(logit) at low temperature.
    assert abs(float((soft[:, 2] > 0.5).float().mean()) - float(torch.sigmoid(torch.tensor(0.5)))) < 0.1


def test_supernet_gradients_reach_architecture_and_derive() -> None:
    cfg = FeatureConfig(n_buckets=64, embed_dim=4)
    specs = field_specs(cfg)
    space = SearchSpace(widths=(4, 8), n_layers=2)
    net = SuperNet(specs, cfg, space, n_levels=4)
    batch = {s.name: (torch.randint(0, 64, (6, s.size)) if s.kind == "bag" else torch.randn(6, s.size)) for s in specs}
    net(batch, tau=0.5).logsumexp(-1).sum().backward()
    for p in net.arch_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    with torch.no_grad():
        net.gates.logits.fill_(-1.0)
        net.gates.logits[0] = 3.0
        net.layers[0].alpha.copy_(torch.tensor([0.0, 2.0]))
        net.layers[1].alpha.copy_(torch.tensor([0.0, 0.0, 4.0]))
    arch = net.derive()
    assert arch == Architecture((specs[0].name,), (8, SKIP))
    assert arch.widths == (8,)
    assert Architecture.from_dict(arch.to_dict()) == arch


def test_architecture_validation() -> None:
    with pytest.raises(ValueError):
        Architecture((), (8,))
    with pytest.raises(ValueError):
        Architecture(("price",), (SKIP, 8))
