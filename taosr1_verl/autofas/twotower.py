"""The classic pre-ranking baseline: a two-tower vector-product student.

A query tower and an item tower each map their own side's fields to a ``dim``-vector; the relevance score is
their dot product ``s``, and the label logits are affine in it (``s * scale + bias``, one scale and bias per
level), so the model is trained with the same soft cross-entropy to the teacher as every other student
(:func:`taosr1_verl.autofas.student.distill`). Item vectors are computed once per catalog; per request the
query tower runs once and each candidate costs one dot product and the ``L``-way softmax.

The towers see no cross features (query x item overlap, attribute conflicts, price against the query's
limit): that is the design's price for its cost.

- query tower: ``query_ngrams`` (embedding bag) and the query's has-a-price-limit flag (column 1 of ``price``);
- item tower: ``title_ngrams``, ``title_chargrams``, ``attr_tokens``, ``category_id`` and the item's log price
  (column 0 of ``price``).

Example:
    >>> from taosr1_verl.autofas.features import FeatureConfig, field_specs
    >>> cfg = FeatureConfig(n_buckets=64)
    >>> tt = TwoTower(field_specs(cfg), cfg, dim=8, n_levels=4)
    >>> batch = {f: torch.zeros(3, s.size, dtype=torch.long if s.kind == "bag" else torch.float)
    ...          for f, s in {s.name: s for s in field_specs(cfg)}.items()}
    >>> tt.batch_logits(batch).shape
    torch.Size([3, 4])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from taosr1_verl.autofas.features import FeatureConfig, FieldSpec
from taosr1_verl.autofas.space import FieldEncoder

QUERY_FIELDS: tuple[str, ...] = ("query_ngrams",)
ITEM_FIELDS: tuple[str, ...] = ("title_ngrams", "title_chargrams", "attr_tokens", "category_id")
INPUT_FIELDS: tuple[str, ...] = (*QUERY_FIELDS, *ITEM_FIELDS, "price")
"""Fields a two-tower student reads (``price`` is split: its item column to the item tower, its query column
to the query tower)."""


def _tower(d_in: int, hidden: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, dim))


class QueryTower(nn.Module):
    """``(query_ngrams [B, size], has_limit [B, 1]) -> [B, dim]``."""

    def __init__(self, spec: FieldSpec, config: FeatureConfig, hidden: int, dim: int) -> None:
        super().__init__()
        self.enc = FieldEncoder(spec, config)
        self.mlp = _tower(self.enc.out_dim + 1, hidden, dim)

    def forward(self, query_ngrams: torch.Tensor, has_limit: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([self.enc(query_ngrams), has_limit], dim=-1))


class ItemTower(nn.Module):
    """``(title_ngrams, title_chargrams, attr_tokens, category_id, log_price [B, 1]) -> [B, dim]``."""

    def __init__(self, specs: Sequence[FieldSpec], config: FeatureConfig, hidden: int, dim: int) -> None:
        super().__init__()
        self.encs = nn.ModuleList(FieldEncoder(s, config) for s in specs)
        self.mlp = _tower(sum(e.out_dim for e in self.encs) + 1, hidden, dim)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *bags, log_price = inputs
        return self.mlp(torch.cat([e(x) for e, x in zip(self.encs, bags, strict=True)] + [log_price], dim=-1))


class ScoreHead(nn.Module):
    """``(query vector [1, dim], item vectors [B, dim]) -> label probabilities [B, L]``: the per-item work."""

    def __init__(self, n_levels: int) -> None:
        super().__init__()
        # Initialised increasing towards the most relevant level (levels are listed most relevant first).
        self.scale = nn.Parameter(torch.linspace(1.0, -1.0, n_levels))
        self.bias = nn.Parameter(torch.zeros(n_levels))

    def logits(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        s = (v * q).sum(-1, keepdim=True)
        return s * self.scale + self.bias

    def forward(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(q, v), dim=-1)


class TwoTower(nn.Module):
    """Query tower, item tower, dot product, affine label logits (see the module docstring)."""

    def __init__(self, specs: Sequence[FieldSpec], config: FeatureConfig, dim: int, n_levels: int,
                 hidden: int = 64) -> None:
        super().__init__()
        by_name = {s.name: s for s in specs}
        self.dim = dim
        self.query_tower = QueryTower(by_name[QUERY_FIELDS[0]], config, hidden, dim)
        self.item_tower = ItemTower([by_name[f] for f in ITEM_FIELDS], config, hidden, dim)
        self.head = ScoreHead(n_levels)

    @staticmethod
    def query_inputs(batch: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        return [batch["query_ngrams"], batch["price"][:, 1:2]]

    @staticmethod
    def item_inputs(batch: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        return [batch[f] for f in ITEM_FIELDS] + [batch["price"][:, 0:1]]

    def batch_logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        q = self.query_tower(*self.query_inputs(batch))
        v = self.item_tower(*self.item_inputs(batch))
        return self.head.logits(q, v)
