"""Students as deployed: a catalog indexed once, then one call per request (query + candidate rows).

- :class:`StudentScorer`: an exported MLP student (searched, hand-designed or random) behind the vectorised
  extraction: the item side of its fields precomputed per catalog (:meth:`FeatureExtractor.catalog`), the
  query side and cross features per request, then ONNX Runtime.
- :class:`TwoTowerScorer`: the two-tower baseline: item vectors computed once per catalog; per request the
  query tower (ONNX) once and the dot-product head (ONNX) over the candidates' vectors.

:func:`measure_request_us` times either at a batch of candidates, cycling over queries, threads pinned:
the per-item cost of the whole request (extraction + model), the number the latency table, the frontier's
measured column, the cascade and the bench use.

Example:
    >>> import numpy as np
    >>> calls = []
    >>> us = measure_request_us(lambda q, rows: calls.append(q), ["a", "b"], np.arange(4), repeats=1)
    >>> us > 0 and set(calls) == {"a", "b"}
    True
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from taosr1_verl.autofas.features import FeatureExtractor
from taosr1_verl.autofas.runtime import export_onnx, ort_session, time_per_item_us, torch_threads
from taosr1_verl.autofas.student import StudentNet, export_student, to_tensors
from taosr1_verl.data.pairs import Pair

if TYPE_CHECKING:
    from taosr1_verl.autofas.twotower import TwoTower


class StudentScorer:
    """An exported MLP student (``student.onnx``, inputs named after its fields) with its extractor."""

    def __init__(self, ex: FeatureExtractor, onnx_path: str | os.PathLike[str], threads: int = 1) -> None:
        self.ex = ex
        self.sess = ort_session(onnx_path, threads)
        self.fields = [i.name for i in self.sess.get_inputs()]
        self.catalog = None

    @classmethod
    def from_net(cls, ex: FeatureExtractor, net: StudentNet, workdir: str | os.PathLike[str],
                 threads: int = 1) -> StudentScorer:
        """Export ``net`` to ONNX under ``workdir`` and serve it."""
        path = Path(tempfile.mkdtemp(dir=workdir)) / "student.onnx"
        example = {f: _example(ex, f) for f in net.field_names}
        export_student(net, to_tensors(example), path)
        return cls(ex, path, threads)

    def index(self, pairs: Sequence[Pair]) -> StudentScorer:
        """Precompute the item side of the catalog (one row per pair) for this student's fields."""
        self.catalog = self.ex.catalog(pairs, self.fields)
        return self

    def score(self, query: str, rows: np.ndarray) -> np.ndarray:
        """Label probabilities ``[len(rows), L]`` of the catalog rows ``rows`` for ``query``."""
        if self.catalog is None:
            raise RuntimeError("StudentScorer.score before index(): no catalog")
        feats = self.ex.request(query, self.catalog, rows, self.fields)
        return self.sess.run(None, feats)[0]

    def score_pairs(self, query: str, items: Sequence[Pair]) -> np.ndarray:
        """The same without a precomputed catalog: the candidates' item side is built inside the request."""
        feats = self.ex.request(query, self.ex.catalog(items, self.fields), None, self.fields)
        return self.sess.run(None, feats)[0]


class TwoTowerScorer:
    """A trained :class:`TwoTower` as served: query tower and score head in ONNX Runtime, item vectors cached."""

    def __init__(self, ex: FeatureExtractor, model: TwoTower, workdir: str | os.PathLike[str],
                 threads: int = 1) -> None:
        self.ex, self.model, self.threads = ex, model.eval(), threads
        tmp = Path(tempfile.mkdtemp(dir=workdir))
        q_example = [torch.from_numpy(_example(ex, "query_ngrams")[:1]), torch.zeros(1, 1)]
        export_onnx(model.query_tower, q_example, tmp / "query.onnx", input_names=["query_ngrams", "has_limit"],
                    output_names=["q"])
        export_onnx(_Head(model), [torch.zeros(1, model.dim), torch.zeros(4, model.dim)], tmp / "head.onnx",
                    input_names=["q", "v"], output_names=["probs"])
        self.q_sess = ort_session(tmp / "query.onnx", threads)
        self.head_sess = ort_session(tmp / "head.onnx", threads)
        self.catalog = None
        self.vectors = np.zeros((0, model.dim), dtype=np.float32)

    def index(self, pairs: Sequence[Pair], batch_size: int = 4096) -> TwoTowerScorer:
        """Item vectors of the catalog, computed once (offline work, torch)."""
        from taosr1_verl.autofas.twotower import INPUT_FIELDS, ITEM_FIELDS, TwoTower

        self.catalog = self.ex.catalog(pairs, INPUT_FIELDS)
        items = self.ex.catalog(pairs, [*ITEM_FIELDS, "price"])
        # The item tower reads the item column of ``price`` only; any query gives the same item columns.
        x = to_tensors(self.ex.request("", items, None, [*ITEM_FIELDS, "price"]))
        out = []
        with torch.inference_mode(), torch_threads(self.threads):
            for s in range(0, len(pairs), batch_size):
                part = {k: v[s : s + batch_size] for k, v in x.items()}
                out.append(self.model.item_tower(*TwoTower.item_inputs(part)))
        self.vectors = torch.cat(out).numpy().astype(np.float32) if out else self.vectors
        return self

    def score(self, query: str, rows: np.ndarray) -> np.ndarray:
        if self.catalog is None:
            raise RuntimeError("TwoTowerScorer.score before index(): no catalog")
        # The query side: its n-gram bag and has-limit flag, standardised as in training (one row suffices).
        qf = self.ex.request(query, self.catalog, np.asarray(rows[:1]), ["query_ngrams", "price"])
        q = self.q_sess.run(None, {"query_ngrams": qf["query_ngrams"], "has_limit": qf["price"][:, 1:2]})[0]
        return self.head_sess.run(None, {"q": q, "v": self.vectors[rows]})[0]


class _Head(torch.nn.Module):
    def __init__(self, model: TwoTower) -> None:
        super().__init__()
        self.head = model.head

    def forward(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.head(q, v)


def _example(ex: FeatureExtractor, field: str, n: int = 4) -> np.ndarray:
    spec = ex.spec_by_name[field]
    if spec.kind == "bag":
        ids = np.zeros((n, spec.size), dtype=np.int64)
        ids[:, 0] = 1
        return ids
    return np.zeros((n, spec.size), dtype=np.float32)


def measure_request_us(score: Callable[[str, np.ndarray], object], queries: Sequence[str], rows: np.ndarray,
                       repeats: int = 7, threads: int = 1) -> float:
    """Median per-item time (µs) of ``score(query, rows)``, cycling through ``queries``, threads pinned."""
    cycle = itertools.cycle(list(queries))

    def run(_: Sequence[object]) -> object:
        return score(next(cycle), rows)

    with torch_threads(threads):
        return time_per_item_us(run, [], len(rows), repeats=repeats)
