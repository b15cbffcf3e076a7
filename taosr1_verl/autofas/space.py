"""The AutoFAS search space: a gate on every feature field and a mixed operator per layer.

Relaxation (the paper does not publish its gate parameterisation; this is ours):

- **Operators**: layer ``l`` holds candidate operators ``Linear(in, w) + ReLU`` for each width ``w`` in
  :attr:`SearchSpace.widths`, plus a skip connection on layers after the first. Architecture logits
  ``alpha_l`` are relaxed with **Gumbel-softmax** (Jang et al. 2017; as in FBNet/DNAS): during the
  search the layer output is ``sum_k g_k * op_k(x)`` with ``g = softmax((alpha + gumbel) / tau)`` and
  ``tau`` annealed towards 0, so the mixture approaches a one-hot choice. Outputs of different widths are
  zero-padded to the largest width (FBNetV2-style channel padding) so that they can be summed.
- **Features**: each field ``f`` has a logit ``beta_f``; its gate is a **binary-concrete** (relaxed
  Bernoulli) sample ``sigmoid((beta_f + logistic noise) / tau)`` that multiplies the field's vector.
- **Latency**: the expected latency of the discrete network under these distributions
  (``P(field kept) = sigmoid(beta)``, ``P(op) = softmax(alpha)``) is computed exactly from the lookup
  table in :mod:`taosr1_verl.autofas.latency`; it is differentiable in ``alpha`` and ``beta``.
- **Derivation**: the strongest operator of each layer (argmax ``alpha``) and the fields with
  ``sigmoid(beta) > 0.5``.

Example:
    >>> space = SearchSpace(widths=(16, 32), n_layers=2)
    >>> space.ops(0), space.ops(1)
    ((16, 32), (16, 32, 'skip'))
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from taosr1_verl.autofas.features import FeatureConfig, FieldSpec

logger = logging.getLogger(__name__)

Op = int | str
SKIP = "skip"


@dataclass(frozen=True)
class SearchSpace:
    """Candidate operators: MLP layers of these widths, and a skip connection after the first layer."""

    widths: tuple[int, ...] = (16, 32, 64)
    """Hidden widths of the candidate MLP operators."""
    n_layers: int = 3
    """Number of mixed operators (the derived student has at most this many hidden layers)."""
    skip: bool = True
    """Offer a skip connection on layers 1.. (layer 0 must map the features to a hidden width)."""

    def __post_init__(self) -> None:
        if not self.widths or any(int(w) < 1 for w in self.widths) or len(set(self.widths)) != len(self.widths):
            raise ValueError(f"SearchSpace.widths must be distinct positive ints, got {self.widths}")
        if self.n_layers < 1:
            raise ValueError(f"SearchSpace.n_layers must be >= 1, got {self.n_layers}")
        object.__setattr__(self, "widths", tuple(sorted(int(w) for w in self.widths)))

    @property
    def max_width(self) -> int:
        return max(self.widths)

    def ops(self, layer: int) -> tuple[Op, ...]:
        return self.widths + ((SKIP,) if self.skip and layer > 0 else ())


@dataclass(frozen=True)
class Architecture:
    """A discrete student: the kept fields (in field order) and one operator per layer."""

    fields: tuple[str, ...]
    ops: tuple[Op, ...]

    def __post_init__(self) -> None:
        if not self.fields:
            raise ValueError("Architecture needs at least one feature field")
        if not self.ops or self.ops[0] == SKIP:
            raise ValueError(f"Architecture: the first operator must be an MLP width, got {self.ops}")

    @property
    def widths(self) -> tuple[int, ...]:
        """Hidden widths of the derived MLP (skips removed)."""
        return tuple(int(o) for o in self.ops if o != SKIP)

    def to_dict(self) -> dict[str, Any]:
        return {"fields": list(self.fields), "ops": list(self.ops)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Architecture:
        return cls(tuple(d["fields"]), tuple(o if o == SKIP else int(o) for o in d["ops"]))

    def describe(self) -> str:
        return f"fields={list(self.fields)} ops={list(self.ops)}"


class FieldEncoder(nn.Module):
    """One field to a vector: masked mean of embeddings (bag) or the standardised dense values as is."""

    def __init__(self, spec: FieldSpec, config: FeatureConfig) -> None:
        super().__init__()
        self.kind = spec.kind
        if spec.kind == "bag":
            self.emb = nn.Embedding(config.n_buckets, config.embed_dim, padding_idx=0)
            nn.init.normal_(self.emb.weight, std=0.1)
            with torch.no_grad():
                self.emb.weight[0].zero_()
            self.out_dim = config.embed_dim
        else:
            self.emb = None
            self.out_dim = spec.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.emb is None:
            return x
        mask = (x > 0).unsqueeze(-1).to(self.emb.weight.dtype)
        # Padding rows are zero, so a sum divided by the token count is the mean over real tokens.
        return self.emb(x).sum(1) / mask.sum(1).clamp_min(1.0)


class FieldGates(nn.Module):
    """Learnable keep-logits over fields, relaxed as binary-concrete gates."""

    def __init__(self, n_fields: int, init_logit: float = 2.0) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.full((n_fields,), float(init_logit)))

    def probs(self) -> torch.Tensor:
        """``P(field kept)``: used by the expected latency and the derivation."""
        return torch.sigmoid(self.logits)

    def forward(self, tau: float, hard: bool = False) -> torch.Tensor:
        if hard:
            return (self.logits > 0).to(self.logits.dtype)
        u = torch.rand_like(self.logits).clamp(1e-6, 1 - 1e-6)
        return torch.sigmoid((self.logits + torch.log(u) - torch.log1p(-u)) / tau)


class MixedOp(nn.Module):
    """Candidate operators of one layer mixed by Gumbel-softmax weights over ``alpha``."""

    def __init__(self, in_dim: int, ops: Sequence[Op], out_dim: int) -> None:
        super().__init__()
        self.ops = tuple(ops)
        self.out_dim = out_dim
        self.in_dim = in_dim
        self.alpha = nn.Parameter(torch.zeros(len(self.ops)))
        self.linears = nn.ModuleList(
            nn.Linear(in_dim, int(o)) if o != SKIP else nn.Identity() for o in self.ops
        )
        if SKIP in self.ops and in_dim != out_dim:
            raise ValueError(f"MixedOp: a skip needs in_dim == out_dim, got {in_dim} != {out_dim}")

    def probs(self) -> torch.Tensor:
        return F.softmax(self.alpha, dim=-1)

    def weights(self, tau: float, hard: bool = False) -> torch.Tensor:
        if hard:
            return F.one_hot(self.alpha.argmax(), len(self.ops)).to(self.alpha.dtype)
        return F.gumbel_softmax(self.alpha, tau=tau, hard=False)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(x.shape[0], self.out_dim)
        for k, (op, lin) in enumerate(zip(self.ops, self.linears, strict=True)):
            if op == SKIP:
                out = out + weights[k] * x
            else:
                h = F.relu(lin(x))
                out = out + weights[k] * F.pad(h, (0, self.out_dim - h.shape[1]))
        return out


class SuperNet(nn.Module):
    """Field encoders -> gated concatenation -> ``n_layers`` mixed operators -> label logits."""

    def __init__(self, specs: Sequence[FieldSpec], config: FeatureConfig, space: SearchSpace,
                 n_levels: int) -> None:
        super().__init__()
        self.specs = tuple(specs)
        self.space = space
        self.encoders = nn.ModuleDict({s.name: FieldEncoder(s, config) for s in self.specs})
        self.field_dims = [self.encoders[s.name].out_dim for s in self.specs]
        self.gates = FieldGates(len(self.specs))
        w = space.max_width
        self.layers = nn.ModuleList(
            MixedOp(sum(self.field_dims) if i == 0 else w, space.ops(i), w) for i in range(space.n_layers)
        )
        self.head = nn.Linear(w, n_levels)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.gates.logits, *(layer.alpha for layer in self.layers)]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def field_probs(self) -> torch.Tensor:
        return self.gates.probs()

    def op_probs(self) -> list[torch.Tensor]:
        return [layer.probs() for layer in self.layers]

    def forward(self, batch: Mapping[str, torch.Tensor], tau: float = 1.0, hard: bool = False) -> torch.Tensor:
        gates = self.gates(tau, hard=hard)
        parts = [self.encoders[s.name](batch[s.name]) * gates[i] for i, s in enumerate(self.specs)]
        x = torch.cat(parts, dim=-1)
        for layer in self.layers:
            x = layer(x, layer.weights(tau, hard=hard))
        return self.head(x)

    def derive(self) -> Architecture:
        """The strongest operator per layer and the fields with keep-probability above 0.5 (at least the
        most probable one)."""
        p = self.field_probs().detach()
        keep = [s.name for s, pi in zip(self.specs, p.tolist(), strict=True) if pi > 0.5]
        if not keep:
            keep = [self.specs[int(p.argmax())].name]
        ops = tuple(layer.ops[int(layer.alpha.detach().argmax())] for layer in self.layers)
        return Architecture(tuple(keep), ops)
