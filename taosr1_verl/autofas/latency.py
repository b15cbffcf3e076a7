"""Latency lookup table measured on this machine, and the differentiable expected latency of the search.

Every building block of a student is timed on its own, at the serving batch size and thread count,
with the serving runtime (ONNX Runtime by default; plain torch as a fallback):

- ``field_us[f]``: encoding field ``f`` (the embedding lookup + pooling of a bag field; ~0 for dense);
- ``extract_us[f]``: computing field ``f`` for a request (one query x ``batch_size`` candidates) with the
  vectorised extraction (:mod:`.columnar`), the item side precomputed per catalog unless the table was
  measured with ``item_features="per_request"`` (optional, counted in the field's cost when present: a
  feature costs its extraction too);
- ``first_us[w] = (a, b)``: the first ``Linear(d_in, w) + ReLU``, fitted as ``a + b * d_in`` from two
  measured input widths, because its input width depends on which fields are kept;
- ``hidden_us["i->o"]``: ``Linear(i, o) + ReLU`` for every pair of widths; a skip costs nothing;
- ``head_us[w]``: the output layer and softmax from width ``w``;
- ``base_us``: a run of an empty model (session overhead) per item;
- ``two_tower_us[d]``: the whole per-request cost of a two-tower student of vector size ``d``
  (:class:`~taosr1_verl.autofas.serve.TwoTowerScorer`: query side, query tower, gathering the precomputed item
  vectors, the dot-product head), per item.

All numbers are microseconds per item. :meth:`LatencyTable.expected` returns the expected latency of the
discrete student when field ``f`` is kept with probability ``p_f`` and layer ``l`` picks operator ``k``
with probability ``pi_lk``, independently: the width distribution ``q_l`` of each layer's output is
propagated (a skip passes ``q_{l-1}`` through), so the cost of layer ``l`` is ``q_{l-1}^T C pi_l``.
For one-hot probabilities it equals :meth:`LatencyTable.discrete`, the table's latency of one architecture.

Example:
    >>> t = LatencyTable(batch_size=8, threads=1, backend="given", field_us={"a": 1.0, "b": 3.0},
    ...                  field_dims={"a": 2, "b": 4}, first_us={"8": (0.5, 0.1)}, hidden_us={},
    ...                  head_us={"8": 0.2}, base_us=0.1)
    >>> round(t.discrete(Architecture(("a",), (8,)), SearchSpace(widths=(8,), n_layers=1)), 3)
    2.0
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from taosr1_verl.autofas.features import FeatureConfig, FeatureExtractor, FieldSpec
from taosr1_verl.autofas.runtime import Backend, make_runner, time_per_item_us, torch_threads
from taosr1_verl.autofas.space import SKIP, Architecture, FieldEncoder, SearchSpace
from taosr1_verl.data.pairs import Pair
from taosr1_verl.files import atomic_write_text

logger = logging.getLogger(__name__)



@dataclass
class LatencyTable:
    """Per-item microseconds of each building block (see the module docstring)."""

    batch_size: int
    threads: int
    backend: str
    field_us: dict[str, float]
    field_dims: dict[str, int]
    first_us: dict[str, tuple[float, float]]
    hidden_us: dict[str, float]
    head_us: dict[str, float]
    base_us: float
    extract_us: dict[str, float] = field(default_factory=dict)
    two_tower_us: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def field_cost(self, name: str) -> float:
        """Encoding plus (when measured) extraction cost of one field, µs per item."""
        return self.field_us[name] + self.extract_us.get(name, 0.0)

    # ---- expected (differentiable) -----------------------------------------------------------------
    def expected(self, field_names: Sequence[str], field_probs: torch.Tensor, space: SearchSpace,
                 op_probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Expected per-item latency (µs) under independent field keeps and operator choices.

        ``field_probs[i]`` is P(keep ``field_names[i]``); ``op_probs[l]`` is over ``space.ops(l)``.
        """
        dt = field_probs.dtype
        cost = torch.tensor([self.field_cost(f) for f in field_names], dtype=dt)
        dims = torch.tensor([float(self.field_dims[f]) for f in field_names], dtype=dt)
        lat = torch.as_tensor(self.base_us, dtype=dt) + (field_probs * cost).sum()
        d_in = (field_probs * dims).sum()
        widths = space.widths
        nw = len(widths)
        a = torch.tensor([self.first_us[str(w)][0] for w in widths], dtype=dt)
        b = torch.tensor([self.first_us[str(w)][1] for w in widths], dtype=dt)
        pi0 = op_probs[0]
        lat = lat + (pi0[:nw] * (a + b * d_in)).sum()
        q = pi0[:nw]
        for layer in range(1, space.n_layers):
            hidden = torch.tensor([[self.hidden_us[f"{i}->{o}"] for o in widths] for i in widths], dtype=dt)
            pi = op_probs[layer]
            lat = lat + q @ hidden @ pi[:nw]
            p_skip = pi[nw] if len(space.ops(layer)) > nw else torch.zeros((), dtype=dt)
            q = pi[:nw] + p_skip * q
        head = torch.tensor([self.head_us[str(w)] for w in widths], dtype=dt)
        return lat + q @ head

    def discrete(self, arch: Architecture, space: SearchSpace) -> float:
        """Table latency (µs per item) of one architecture: :meth:`expected` with one-hot choices."""
        names = list(self.field_dims)
        unknown = set(arch.fields) - set(names)
        if unknown:
            raise ValueError(f"architecture uses fields {sorted(unknown)} missing from the latency table")
        p = torch.tensor([1.0 if f in arch.fields else 0.0 for f in names], dtype=torch.float64)
        ops = []
        for layer, op in enumerate(arch.ops):
            choices = space.ops(layer)
            if op not in choices:
                raise ValueError(f"layer {layer}: operator {op!r} is not in the search space {choices}")
            ops.append(torch.nn.functional.one_hot(torch.tensor(choices.index(op)), len(choices)).double())
        return float(self.expected(names, p, space, ops))

    # ---- files -----------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyTable:
        try:
            d = json.loads(Path(path).read_text())
            d["first_us"] = {k: tuple(v) for k, v in d["first_us"].items()}
            return cls(**d)
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a latency table ({e})") from None

    def covers(self, field_names: Sequence[str], space: SearchSpace) -> bool:
        """Whether this table has every field and width pair the search needs."""
        ws = [str(w) for w in space.widths]
        return (
            set(field_names) <= set(self.field_us)
            and all(w in self.first_us and w in self.head_us for w in ws)
            and all(f"{i}->{o}" in self.hidden_us for i in ws for o in ws)
        )


class _LinearReLU(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x))


class _Head(nn.Module):
    def __init__(self, d_in: int, n_out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.lin(x), dim=-1)


class _Empty(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.0


def example_input(spec: FieldSpec, config: FeatureConfig, batch_size: int, seed: int = 0) -> torch.Tensor:
    """Random input of a field at a realistic fill (3/4 of a bag's slots used)."""
    g = torch.Generator().manual_seed(seed)
    if spec.kind == "bag":
        ids = torch.randint(1, config.n_buckets, (batch_size, spec.size), generator=g)
        ids[:, max(1, (3 * spec.size) // 4):] = 0
        return ids
    return torch.randn(batch_size, spec.size, generator=g)


ItemFeatureMode = Literal["precomputed", "per_request"]
EXTRACTION = "columnar-1"
"""Version of the extraction the table's ``extract_us`` were measured with (``meta["extraction"]``); a table
measured with another one is re-measured."""


def measure_latency_table(specs: Sequence[FieldSpec], config: FeatureConfig, space: SearchSpace,
                          n_levels: int, batch_size: int = 1024, threads: int = 1,
                          backend: Backend = "onnxruntime", repeats: int = 7,
                          progress: bool = False, extractor: FeatureExtractor | None = None,
                          sample_pairs: Sequence[Pair] | None = None,
                          item_features: ItemFeatureMode = "precomputed",
                          two_tower_dims: Sequence[int] = ()) -> LatencyTable:
    """Time every building block on this machine (see the module docstring). Takes ~1 s per block with
    ONNX Runtime (the export dominates) and well under that with torch. With ``extractor`` and
    ``sample_pairs`` (their items form the catalog, their queries the requests), each field's extraction is
    timed too (``extract_us``), and with ``two_tower_dims`` the two-tower students (``two_tower_us``)."""
    from tqdm import tqdm

    blocks: list[tuple[str, nn.Module, list[torch.Tensor]]] = []
    dims: dict[str, int] = {}
    for s in specs:
        enc = FieldEncoder(s, config)
        dims[s.name] = enc.out_dim
        if enc.emb is not None:
            blocks.append((f"field:{s.name}", enc, [example_input(s, config, batch_size)]))
    d_full = sum(dims.values())
    d_small = min(dims.values())
    for w in space.widths:
        for d in sorted({d_small, d_full}):
            blocks.append((f"first:{w}:{d}", _LinearReLU(d, w), [torch.randn(batch_size, d)]))
        for o in space.widths:
            if space.n_layers > 1:
                blocks.append((f"hidden:{w}->{o}", _LinearReLU(w, o), [torch.randn(batch_size, w)]))
        blocks.append((f"head:{w}", _Head(w, n_levels), [torch.randn(batch_size, w)]))
    blocks.append(("base", _Empty(), [torch.randn(batch_size, 1)]))

    measured: dict[str, float] = {}
    with torch_threads(threads):
        for name, module, example in tqdm(blocks, desc="latency table", disable=not progress):
            run = make_runner(module, example, backend, threads)
            inputs = example if backend == "torch" else [t.numpy() for t in example]
            measured[name] = time_per_item_us(run, inputs, batch_size, repeats=repeats)
    base = measured["base"]
    extract_us: dict[str, float] = {}
    two_tower_us: dict[str, float] = {}
    if extractor is not None and sample_pairs:
        from taosr1_verl.autofas.serve import measure_request_us

        sample = list(sample_pairs)
        rows = np.resize(np.arange(len(sample)), batch_size)
        cands = [sample[i] for i in rows]
        queries = list(dict.fromkeys(p.query for p in sample))[:16]
        for s in specs:
            if item_features == "precomputed":
                catalog = extractor.catalog(sample, [s.name])

                def one(query: str, r: np.ndarray, name: str = s.name, cat: Any = catalog) -> Any:
                    return extractor.request(query, cat, r, [name])
            else:
                def one(query: str, r: np.ndarray, name: str = s.name) -> Any:
                    return extractor.request(query, extractor.catalog(cands, [name]), None, [name])
            extract_us[s.name] = measure_request_us(one, queries, rows, repeats=max(3, repeats // 2),
                                                    threads=threads)
        if two_tower_dims:
            from taosr1_verl.autofas.serve import TwoTowerScorer
            from taosr1_verl.autofas.twotower import TwoTower

            with tempfile.TemporaryDirectory() as tmp:
                for d in two_tower_dims:
                    scorer = TwoTowerScorer(extractor, TwoTower(specs, config, int(d), n_levels), tmp, threads)
                    scorer.index(sample)
                    two_tower_us[str(int(d))] = measure_request_us(scorer.score, queries, rows, repeats=repeats,
                                                                   threads=threads)

    def net(v: float) -> float:
        # The per-run overhead is counted once, in base_us; blocks keep only their own work.
        return max(v - base, 0.0)

    field_us = {s.name: net(measured[f"field:{s.name}"]) if f"field:{s.name}" in measured else 0.0
                for s in specs}
    first_us: dict[str, tuple[float, float]] = {}
    for w in space.widths:
        t_small, t_full = net(measured[f"first:{w}:{d_small}"]), net(measured[f"first:{w}:{d_full}"])
        slope = max((t_full - t_small) / (d_full - d_small), 0.0) if d_full > d_small else 0.0
        first_us[str(w)] = (max(t_small - slope * d_small, 0.0), slope)
    hidden_us = {f"{i}->{o}": net(measured[f"hidden:{i}->{o}"]) if space.n_layers > 1 else 0.0
                 for i in space.widths for o in space.widths}
    head_us = {str(w): net(measured[f"head:{w}"]) for w in space.widths}
    meta = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "raw_us": measured,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "extraction": f"{EXTRACTION}/{item_features}" if extract_us else None}
    if backend == "onnxruntime":
        import onnxruntime

        meta["onnxruntime"] = onnxruntime.__version__
    table = LatencyTable(batch_size=batch_size, threads=threads, backend=backend, field_us=field_us,
                         field_dims=dims, first_us=first_us, hidden_us=hidden_us, head_us=head_us,
                         base_us=base, extract_us=extract_us, two_tower_us=two_tower_us, meta=meta)
    logger.info("latency table (%s, batch %d, %d thread(s)): fields %s, extraction %s", backend, batch_size,
                threads, {k: round(v, 3) for k, v in field_us.items()},
                {k: round(v, 2) for k, v in extract_us.items()})
    return table


def arch_ops_valid(arch: Architecture, space: SearchSpace) -> bool:
    """Whether every operator of ``arch`` is offered at its layer."""
    return len(arch.ops) == space.n_layers and all(
        op in space.ops(i) for i, op in enumerate(arch.ops)) and arch.ops[0] != SKIP

