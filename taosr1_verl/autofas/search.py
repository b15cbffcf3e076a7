"""The AutoFAS search: distillation loss plus a differentiable latency penalty, first-order bi-level.

Each step updates the network weights on a training batch (distillation only), then, after a warm-up,
the architecture parameters (field keep-logits and operator logits) on a held-out batch with

    loss = soft-CE(student, teacher) + latency_weight * relu(E[latency] / budget - 1)
           + latency_pressure * E[latency] / budget

where ``E[latency]`` comes from :meth:`LatencyTable.expected` (µs per item). The Gumbel-softmax and
binary-concrete temperature anneals geometrically from ``tau_start`` to ``tau_end``. Splitting weights and
architecture across data follows DARTS' first-order approximation: the architecture is chosen for how
well it generalises, not how well the supernet memorises.

After the search the discrete student is derived (:meth:`SuperNet.derive`) and, if its table latency is
still above the budget, repaired by dropping the least probable fields, then narrowing layers. If it is below
the budget, the fields the search left out are added back, most probable first, while the student still fits
(:func:`fill`): the relaxed search meets the budget in expectation with gates near one half, and thresholding
them at 0.5 can leave much of the budget unused (the README's frontier section has the measurement).

Example:
    >>> cfg = SearchConfig(epochs=4, budget_us=1.0)
    >>> cfg.tau(0), round(cfg.tau(3), 2)
    (1.0, 0.2)
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from taosr1_verl.autofas.features import FeatureConfig, FieldSpec
from taosr1_verl.autofas.latency import LatencyTable
from taosr1_verl.autofas.space import SKIP, Architecture, SearchSpace, SuperNet
from taosr1_verl.autofas.student import distill_loss, take

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchConfig:
    """Search hyper-parameters."""

    epochs: int = 12
    """Passes over the training split."""
    warmup_epochs: int = 2
    """Epochs of weight-only training before the architecture parameters move."""
    batch_size: int = 128
    lr: float = 3e-3
    """Adam learning rate of the supernet weights."""
    arch_lr: float = 1.0
    """SGD learning rate of the field and operator logits."""
    tau_start: float = 1.0
    tau_end: float = 0.2
    budget_us: float | None = None
    """Latency budget, µs per item at the table's batch size; ``None``: ``budget_fraction`` of the
    largest architecture's table latency."""
    budget_fraction: float = 0.25
    latency_weight: float = 1.0
    """Weight of the hinge ``relu(E[lat] / budget - 1)``."""
    latency_pressure: float = 0.01
    """Small linear push towards cheaper models inside the budget (ties go to the cheaper one)."""
    fill_budget: bool = True
    """After derivation, add left-out fields back (most probable first) while the student fits the budget."""
    seed: int = 0

    def tau(self, epoch: int) -> float:
        if self.epochs <= 1:
            return self.tau_end
        return self.tau_start * (self.tau_end / self.tau_start) ** (epoch / (self.epochs - 1))

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("SearchConfig: epochs and batch_size must be >= 1")
        if self.budget_us is not None and self.budget_us <= 0:
            raise ValueError(f"SearchConfig.budget_us must be positive, got {self.budget_us}")
        if not 0 < self.tau_end <= self.tau_start:
            raise ValueError("SearchConfig: need 0 < tau_end <= tau_start")


@dataclass
class SearchResult:
    """Outcome of :func:`run_search`."""

    arch: Architecture
    budget_us: float
    table_us: float
    """Table latency of :attr:`arch`."""
    field_probs: dict[str, float]
    op_probs: list[dict[str, float]]
    history: list[dict[str, Any]] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arch"] = self.arch.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchResult:
        d = dict(d)
        d["arch"] = Architecture.from_dict(d["arch"])
        return cls(**d)


def largest_architecture(field_names: Sequence[str], space: SearchSpace) -> Architecture:
    return Architecture(tuple(field_names), tuple([space.max_width] * space.n_layers))


def resolve_budget(cfg: SearchConfig, table: LatencyTable, field_names: Sequence[str], space: SearchSpace) -> float:
    if cfg.budget_us is not None:
        return float(cfg.budget_us)
    return cfg.budget_fraction * table.discrete(largest_architecture(field_names, space), space)


def repair(arch: Architecture, table: LatencyTable, space: SearchSpace, budget_us: float,
           field_probs: Mapping[str, float]) -> tuple[Architecture, list[str]]:
    """Drop the least probable fields, then narrow the widest layers, until the table latency fits."""
    steps: list[str] = []
    fields, ops = list(arch.fields), list(arch.ops)
    while table.discrete(Architecture(tuple(fields), tuple(ops)), space) > budget_us:
        if len(fields) > 1:
            worst = min(fields, key=lambda f: field_probs.get(f, 0.0))
            fields.remove(worst)
            steps.append(f"dropped field {worst}")
            continue
        widths = [(int(o), i) for i, o in enumerate(ops) if o != SKIP]
        w, i = max(widths)
        smaller = [x for x in space.widths if x < w]
        if smaller:
            ops[i] = max(smaller)
            steps.append(f"layer {i}: width {w} -> {ops[i]}")
        elif i > 0:
            ops[i] = SKIP
            steps.append(f"layer {i}: width {w} -> skip")
        else:
            break
    return Architecture(tuple(fields), tuple(ops)), steps


def fill(arch: Architecture, table: LatencyTable, space: SearchSpace, budget_us: float,
         field_probs: Mapping[str, float]) -> tuple[Architecture, list[str]]:
    """Add the fields ``arch`` lacks, most probable first, each only if the student still fits ``budget_us``."""
    steps: list[str] = []
    fields = list(arch.fields)
    order = list(field_probs)
    for f in sorted((f for f in order if f not in fields), key=lambda f: -field_probs[f]):
        trial = Architecture(tuple(x for x in order if x in fields or x == f), arch.ops)
        if table.discrete(trial, space) <= budget_us:
            fields = list(trial.fields)
            steps.append(f"added field {f} (P(keep) {field_probs[f]:.2f}) within the budget")
    return Architecture(tuple(x for x in order if x in fields), arch.ops), steps


def run_search(specs: Sequence[FieldSpec], config: FeatureConfig, space: SearchSpace, table: LatencyTable,
               train_x: Mapping[str, torch.Tensor], train_t: torch.Tensor, val_x: Mapping[str, torch.Tensor],
               val_t: torch.Tensor, cfg: SearchConfig | None = None, progress: bool = False) -> SearchResult:
    """Search fields and operators (see the module docstring); returns the derived architecture."""
    from tqdm.auto import tqdm

    cfg = cfg or SearchConfig()
    torch.manual_seed(cfg.seed)
    names = [s.name for s in specs]
    if not table.covers(names, space):
        raise ValueError("the latency table does not cover these fields/widths; re-measure it")
    budget = resolve_budget(cfg, table, names, space)
    net = SuperNet(specs, config, space, train_t.shape[1])
    w_opt = torch.optim.Adam(net.weight_parameters(), lr=cfg.lr)
    # Plain SGD: the step must scale with each field's cost and usefulness. Adam's per-parameter
    # normalisation moves every gate by about lr per step whatever its cost, which prunes uniformly.
    a_opt = torch.optim.SGD(net.arch_parameters(), lr=cfg.arch_lr)
    n, nv = train_t.shape[0], val_t.shape[0]
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, Any]] = []
    for epoch in tqdm(range(cfg.epochs), desc="autofas search", disable=not progress):
        tau = cfg.tau(epoch)
        net.train()
        perm = torch.randperm(n, generator=g)
        vperm = torch.randperm(nv, generator=g)
        kd_sum, steps, vpos = 0.0, 0, 0
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            loss = distill_loss(net(take(train_x, idx), tau), train_t[idx])
            w_opt.zero_grad(set_to_none=True)
            loss.backward()
            w_opt.step()
            kd_sum += float(loss.detach())
            steps += 1
            if epoch >= cfg.warmup_epochs:
                if vpos >= nv:
                    vperm, vpos = torch.randperm(nv, generator=g), 0
                vidx = vperm[vpos : vpos + cfg.batch_size]
                vpos += cfg.batch_size
                lat = table.expected(names, net.field_probs(), space, net.op_probs())
                a_loss = (distill_loss(net(take(val_x, vidx), tau), val_t[vidx])
                          + cfg.latency_weight * torch.relu(lat / budget - 1.0)
                          + cfg.latency_pressure * lat / budget)
                a_opt.zero_grad(set_to_none=True)
                a_loss.backward()
                a_opt.step()
        with torch.no_grad():
            net.eval()
            val_hard = float(distill_loss(net(val_x, tau, hard=True), val_t))
            lat = float(table.expected(names, net.field_probs(), space, net.op_probs()))
        history.append({
            "epoch": epoch, "tau": tau, "train_kd": kd_sum / max(steps, 1), "val_kd_hard": val_hard,
            "expected_us": lat, "budget_us": budget,
            "field_probs": dict(zip(names, net.field_probs().tolist(), strict=True)),
            "op_probs": [dict(zip(map(str, layer.ops), layer.probs().tolist(), strict=True)) for layer in net.layers],
        })
        logger.info("search epoch %d: tau %.2f train KD %.4f val KD (hard) %.4f E[lat] %.3f us (budget %.3f)",
                    epoch, tau, history[-1]["train_kd"], val_hard, lat, budget)
    field_probs = dict(zip(names, net.field_probs().tolist(), strict=True))
    arch, steps_taken = repair(net.derive(), table, space, budget, field_probs)
    if cfg.fill_budget:
        arch, filled = fill(arch, table, space, budget, field_probs)
        steps_taken += filled
    for s in steps_taken:
        logger.info("after derivation: %s", s)
    return SearchResult(arch=arch, budget_us=budget, table_us=table.discrete(arch, space), field_probs=field_probs,
                        op_probs=history[-1]["op_probs"], history=history, repaired=steps_taken)


def random_architecture(field_names: Sequence[str], space: SearchSpace, table: LatencyTable, max_us: float,
                        rng: random.Random, min_fraction: float = 0.6, tries: int = 5000) -> Architecture:
    """A random architecture with table latency in ``[min_fraction * max_us, max_us]`` (the baseline "at
    equal latency"): uniform random field subsets and operators, by rejection. Falls back to the sample
    closest to ``max_us`` when none lands in the band."""
    closest: tuple[float, Architecture] | None = None
    for _ in range(tries):
        fields = tuple(f for f in field_names if rng.random() < 0.5)
        if not fields:
            continue
        ops = tuple(rng.choice(space.ops(i)) for i in range(space.n_layers))
        arch = Architecture(fields, ops)
        us = table.discrete(arch, space)
        if min_fraction * max_us <= us <= max_us:
            return arch
        if closest is None or abs(us - max_us) < closest[0]:
            closest = (abs(us - max_us), arch)
    if closest is None:
        raise ValueError("no random architecture could be drawn")
    logger.warning("no random architecture within [%.2f, 1] x %.3f us; using the closest", min_fraction, max_us)
    return closest[1]
