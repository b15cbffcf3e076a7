"""The teacher signal, scored once and cached to parquet so that the search never re-runs the LLM.

A *teacher scorer* is any callable ``scorer(pairs) -> (n, L) array`` of label probabilities in
``schema.levels`` order (most relevant first), e.g. :func:`hf_teacher` (first-token scoring of a TaoSR1
checkpoint through :class:`taosr1_verl.scoring.hf.HFScorer`) or :func:`gold_soft_teacher` (the synthetic
catalog's gold labels turned into soft probabilities: a stand-in teacher that needs no model). A table of
precomputed probabilities (``{pair_id: probs}``) works too.

The cache has one row per pair: the pair's own columns (``taosr1_verl.data.builders.PAIRS_SCHEMA``), one
``p_<label>`` column per level, ``expected`` (sum of level x probability), the CumPT ``teacher_level``
and ``tier`` at ``beta``, and the ``teacher`` name. Building is resumable: rows already in the file for
the same teacher are kept, and the file is rewritten atomically after every chunk.

Example:
    >>> from taosr1_verl.data.synth import generate_synthetic
    >>> import tempfile, os
    >>> pairs = generate_synthetic(16, seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "teacher.parquet")
    >>> table = build_teacher_cache(pairs, path, scorer=gold_soft_teacher("taosr1"), teacher="gold-soft")
    >>> table.probs.shape, load_teacher_cache(path).pair_ids == table.pair_ids
    ((16, 4), True)
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from taosr1_verl.data.pairs import Pair
from taosr1_verl.files import atomic_path
from taosr1_verl.schema import LabelSchema, get_schema
from taosr1_verl.scoring.cumpt import cumpt_levels, levels_to_tiers

logger = logging.getLogger(__name__)

TeacherScorer = Callable[[Sequence[Pair]], np.ndarray]


@dataclass
class TeacherTable:
    """Pairs with their teacher probabilities (rows aligned)."""

    pairs: list[Pair]
    probs: np.ndarray
    """``(n, L)`` label probabilities in ``schema.levels`` order."""
    schema: LabelSchema
    beta: float
    teacher: str

    @property
    def pair_ids(self) -> list[str]:
        return [p.pair_id for p in self.pairs]

    @property
    def expected(self) -> np.ndarray:
        """Expected relevance ``sum_k level_k * P(level_k)``: the teacher's ranking score."""
        return self.probs @ np.asarray(self.schema.level_values, dtype=np.float64)

    @property
    def levels(self) -> np.ndarray:
        """CumPT levels at :attr:`beta`."""
        return cumpt_levels(self.probs, self.beta, self.schema)

    @property
    def tiers(self) -> list[str]:
        return levels_to_tiers(self.levels, self.schema)

    def subset(self, rows: Sequence[int]) -> TeacherTable:
        idx = list(rows)
        return TeacherTable([self.pairs[i] for i in idx], self.probs[idx], self.schema, self.beta, self.teacher)


def prob_columns(schema: LabelSchema) -> list[str]:
    return [f"p_{lv.label}" for lv in schema.levels]


def _check_probs(probs: np.ndarray, pairs: Sequence[Pair], schema: LabelSchema, where: str) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(pairs), len(schema)):
        raise ValueError(f"{where}: teacher returned shape {p.shape}, expected {(len(pairs), len(schema))}")
    sums = p.sum(1)
    bad = ~np.isfinite(p).all(1) | (p < 0).any(1) | (np.abs(sums - 1.0) > 1e-3)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where}: pair {pairs[i].pair_id!r}: teacher probabilities {p[i].tolist()} are not a "
                         "distribution (finite, >= 0, summing to 1)")
    return p / sums[:, None]


def table_scorer(table: Mapping[str, Sequence[float]]) -> TeacherScorer:
    """A scorer that looks probabilities up by ``pair_id`` (e.g. scores computed elsewhere)."""
    def score(pairs: Sequence[Pair]) -> np.ndarray:
        missing = [p.pair_id for p in pairs if p.pair_id not in table]
        if missing:
            raise ValueError(f"precomputed teacher table has no row for pair_id {missing[0]!r} "
                             f"({len(missing)} missing)")
        return np.asarray([list(table[p.pair_id]) for p in pairs], dtype=np.float64)
    return score


def gold_soft_teacher(schema: LabelSchema | str | None = None, sharpness: float = 2.0, noise: float = 0.5,
                      seed: int = 0) -> TeacherScorer:
    """A stand-in teacher from gold labels: logits ``-sharpness * |level - gold| + noise``, softmaxed.

    The noise is drawn per ``pair_id`` (CRC32-seeded), so a pair's scores do not depend on batching or
    order. Pairs without a gold level of the schema raise ``ValueError`` naming the pair.
    """
    schema = get_schema(schema)
    values = np.asarray(schema.level_values, dtype=np.float64)

    def score(pairs: Sequence[Pair]) -> np.ndarray:
        out = np.empty((len(pairs), len(values)))
        for i, p in enumerate(pairs):
            if p.level not in schema.level_values:
                raise ValueError(f"pair {p.pair_id!r}: gold level {p.level!r} is not a level of schema "
                                 f"{schema.name!r}; the gold-soft teacher needs labelled pairs")
            rng = np.random.default_rng([seed, zlib.crc32(p.pair_id.encode())])
            logits = -sharpness * np.abs(values - p.level) + noise * rng.standard_normal(len(values))
            e = np.exp(logits - logits.max())
            out[i] = e / e.sum()
        return out
    return score


def hf_teacher(model_dir: str | os.PathLike[str], schema: LabelSchema | str | None = None, *,
               batch_size: int = 32, prompt_config: object | None = None, fmt: str = "post_cot") -> TeacherScorer:
    """First-token label probabilities of a local HF checkpoint (items of one query share a KV prefix)."""
    from taosr1_verl.scoring.hf import HFScorer

    scorer = HFScorer(model_dir, schema=schema, batch_size=batch_size)

    def score(pairs: Sequence[Pair]) -> np.ndarray:
        out = np.zeros((len(pairs), len(scorer.schema)))
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(pairs):
            groups.setdefault(p.query, []).append(i)
        for query, rows in groups.items():
            items = [{"title": pairs[i].title, "attributes": pairs[i].attributes,
                      "description": pairs[i].description} for i in rows]
            out[rows] = scorer.score_items(query, items, fmt=fmt, prompt_config=prompt_config)
        return out
    return score


def _write(path: Path, records: list[dict], schema: LabelSchema) -> None:
    from taosr1_verl.data.builders import PAIRS_SCHEMA

    fields = list(PAIRS_SCHEMA) + [pa.field(c, pa.float64()) for c in prob_columns(schema)] + [
        pa.field("expected", pa.float64()), pa.field("teacher_level", pa.int64()),
        pa.field("tier", pa.string()), pa.field("teacher", pa.string())]
    table = pa.Table.from_pylist(records, schema=pa.schema(fields))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def build_teacher_cache(pairs: Sequence[Pair], path: str | os.PathLike[str], *, scorer: TeacherScorer | None = None,
                        probs_table: Mapping[str, Sequence[float]] | None = None,
                        schema: LabelSchema | str | None = None, beta: float = 0.5, teacher: str = "teacher",
                        chunk_size: int = 256, progress: bool = False) -> TeacherTable:
    """Score ``pairs`` with ``scorer`` (or look them up in ``probs_table``) and cache them at ``path``.

    Resumes: pairs whose ``pair_id`` is already cached for the same ``teacher`` are not re-scored.
    Duplicate ``pair_id`` values raise ``ValueError`` (the cache is keyed by them).
    """
    from tqdm.auto import tqdm

    schema = get_schema(schema)
    if (scorer is None) == (probs_table is None):
        raise ValueError("build_teacher_cache: pass exactly one of scorer= or probs_table=")
    score = scorer if scorer is not None else table_scorer(probs_table or {})
    path = Path(path)
    seen: dict[str, int] = {}
    for i, p in enumerate(pairs):
        if p.pair_id in seen:
            raise ValueError(f"pairs {seen[p.pair_id]} and {i} share pair_id {p.pair_id!r}")
        seen[p.pair_id] = i
    records: dict[str, dict] = {}
    if path.exists():
        old = load_teacher_cache(path, schema)
        if old.teacher == teacher:
            for p, row in zip(old.pairs, old.probs, strict=True):
                if p.pair_id in seen:
                    records[p.pair_id] = _record(p, row, schema, beta, teacher)
            logger.info("%s: resuming, %d of %d pairs already scored", path, len(records), len(pairs))
        else:
            logger.info("%s: cached for teacher %r, not %r: rescoring", path, old.teacher, teacher)
    todo = [p for p in pairs if p.pair_id not in records]
    with tqdm(total=len(todo), desc="teacher scoring", disable=not progress, unit="pair") as bar:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            probs = _check_probs(score(chunk), chunk, schema, f"{path}: teacher {teacher!r}")
            for p, row in zip(chunk, probs, strict=True):
                records[p.pair_id] = _record(p, row, schema, beta, teacher)
            _write(path, [records[p.pair_id] for p in pairs if p.pair_id in records], schema)
            bar.update(len(chunk))
    if not todo:
        _write(path, [records[p.pair_id] for p in pairs], schema)
    return load_teacher_cache(path, schema, beta=beta)


def _record(p: Pair, probs: np.ndarray, schema: LabelSchema, beta: float, teacher: str) -> dict:
    rec = p.to_record()
    for col, v in zip(prob_columns(schema), probs, strict=True):
        rec[col] = float(v)
    level = int(cumpt_levels(probs[None, :], beta, schema)[0])
    rec["expected"] = float(np.dot(probs, schema.level_values))
    rec["teacher_level"] = level
    rec["tier"] = schema.tier_of(level)
    rec["teacher"] = teacher
    return rec


def load_teacher_cache(path: str | os.PathLike[str], schema: LabelSchema | str | None = None,
                       beta: float = 0.5) -> TeacherTable:
    """Read a cache written by :func:`build_teacher_cache`; errors name the file, row and column."""
    schema = get_schema(schema)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"teacher cache {path} does not exist; build it with `taosr1 autofas teacher`")
    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"{path}: not a parquet file ({e})") from None
    cols = prob_columns(schema)
    pairs, probs, names = [], [], set()
    for i, r in enumerate(rows):
        missing = [c for c in ("pair_id", "index", "query", "title", "level", "teacher", *cols) if c not in r]
        if missing:
            raise ValueError(f"{path}: row {i}: missing column(s) {missing} (schema {schema.name!r})")
        try:
            pairs.append(Pair.from_record(r))
        except (TypeError, ValueError, KeyError) as e:
            raise ValueError(f"{path}: row {i}: bad pair fields ({e})") from None
        row = [r[c] for c in cols]
        if any(v is None for v in row):
            raise ValueError(f"{path}: row {i}: null teacher probability in {cols}")
        probs.append(row)
        names.add(r["teacher"])
    if len(names) > 1:
        raise ValueError(f"{path}: rows from several teachers {sorted(names)}")
    p = _check_probs(np.asarray(probs, dtype=np.float64).reshape(len(pairs), len(cols)), pairs, schema, str(path))
    return TeacherTable(pairs, p, schema, beta, names.pop() if names else "")
