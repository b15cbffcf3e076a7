"""Pairs -> the parquet files training and evaluation read: RL (verl ``RLHFDataset``), SFT (``messages``), eval.

Layouts are documented in ``docs/data.md``. All writers stream: rows go to a temp file in batches through
``pyarrow.parquet.ParquetWriter`` and the file is renamed into place at the end (atomic). Class balancing
is streaming too: with known per-class counts, selection sampling (Knuth's algorithm S) keeps exactly
``m`` rows of each class in one pass, seeded.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from taosr1_verl.data.pairs import Pair
from taosr1_verl.files import atomic_path, iter_jsonl, replace, temp_path
from taosr1_verl.prompts import PromptConfig, build_messages
from taosr1_verl.response import ResponseFormat, make_parser
from taosr1_verl.schema import LabelSchema, get_schema

logger = logging.getLogger(__name__)

ABILITY = "relevance"
BATCH_ROWS = 4096

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
EXTRA_INFO = pa.struct([
    ("split", pa.string()), ("index", pa.int64()), ("pair_id", pa.string()), ("query_id", pa.string()),
    ("query", pa.string()), ("item_id", pa.string()), ("title", pa.string()), ("attributes", pa.string()),
    ("level", pa.int64()), ("label", pa.string()), ("query_kind", pa.string()), ("category", pa.string()),
    ("brand", pa.string()), ("price", pa.float64()), ("source", pa.string()), ("schema", pa.string()),
    ("rules_used", pa.list_(pa.string())), ("spec", pa.string()), ("teacher_response", pa.string()),
])
RL_SCHEMA = pa.schema([
    ("data_source", pa.string()), ("prompt", pa.list_(MESSAGE)), ("ability", pa.string()),
    ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
    ("extra_info", EXTRA_INFO),
])
SFT_SCHEMA = pa.schema([
    ("data_source", pa.string()), ("messages", pa.list_(MESSAGE)), ("extra_info", EXTRA_INFO),
])
PAIRS_SCHEMA = pa.schema([
    ("pair_id", pa.string()), ("index", pa.int64()), ("query_id", pa.string()), ("query", pa.string()),
    ("item_id", pa.string()), ("title", pa.string()), ("attributes", pa.string()), ("description", pa.string()),
    ("level", pa.int64()), ("query_kind", pa.string()), ("category", pa.string()), ("brand", pa.string()),
    ("price", pa.float64()), ("rules_used", pa.list_(pa.string())), ("spec", pa.string()), ("source", pa.string()),
])


# ---- class balance ------------------------------------------------------------------------------
def class_cv(counts: Mapping[int, int], levels: Sequence[int] | None = None) -> float:
    """Coefficient of variation (population std / mean) of per-class counts; 0.0 is perfectly balanced.

    ``levels`` lists the classes to include (missing ones count 0); default: the keys of ``counts``.

    Example:
        >>> round(class_cv({4: 50, 3: 5, 2: 36, 1: 9}), 3)
        0.749
        >>> class_cv({4: 7, 3: 7})
        0.0
    """
    keys = list(levels) if levels is not None else list(counts)
    if not keys:
        return 0.0
    vals = [counts.get(k, 0) for k in keys]
    mean = sum(vals) / len(vals)
    if mean == 0:
        return 0.0
    return math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)) / mean


def balanced_targets(counts: Mapping[int, int], per_class: int | None = None) -> dict[int, int]:
    """Rows to keep per class: the smallest non-empty class's count (or ``per_class``, if smaller)."""
    present = {k: n for k, n in counts.items() if n > 0}
    if not present:
        return {}
    m = min(present.values())
    if per_class is not None:
        m = min(m, per_class)
    return {k: m for k in present}


class BalancedSelector:
    """Streaming keep/drop decisions keeping exactly ``targets[c]`` of the ``counts[c]`` rows of each class,
    uniformly at random (selection sampling, Knuth's algorithm S), seeded and order-stable."""

    def __init__(self, counts: Mapping[int, int], targets: Mapping[int, int], seed: int = 0) -> None:
        self.counts, self.targets = dict(counts), dict(targets)
        self.rng = random.Random(seed)
        self.seen: Counter[int] = Counter()
        self.kept: Counter[int] = Counter()

    def keep(self, level: int) -> bool:
        n, m = self.counts.get(level, 0), self.targets.get(level, 0)
        if self.seen[level] >= n:
            raise ValueError(f"class {level}: more rows than the {n} counted (the input changed between passes)")
        keep = self.rng.random() * (n - self.seen[level]) < (m - self.kept[level])
        self.seen[level] += 1
        self.kept[level] += keep
        return keep


def balance_classes(levels: Sequence[int], seed: int = 0, per_class: int | None = None) -> list[int]:
    """Indices (ascending) of a class-balanced subset of ``levels``: every class keeps the minority count.

    Example:
        >>> keep = balance_classes([4, 4, 4, 2, 2, 1, 4], seed=0)
        >>> sorted(Counter([4, 4, 4, 2, 2, 1, 4][i] for i in keep).values())
        [1, 1, 1]
    """
    counts = Counter(levels)
    sel = BalancedSelector(counts, balanced_targets(counts, per_class), seed)
    return [i for i, lv in enumerate(levels) if sel.keep(lv)]


# ---- rows ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildConfig:
    """How pairs become rows (shared by the RL, SFT and eval writers)."""

    data_source: str = "taosr1_synthetic"
    """``data_source`` column; verl logs validation metrics per data source."""
    schema: str = "taosr1"
    """Label schema preset of the gold labels."""
    fmt: ResponseFormat = "post_cot"
    """Response format the prompt asks for (and the SFT target uses)."""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """Prompt options; ``PromptConfig(instructions="compact")`` for tiny models."""


def _extra_info(pair: Pair, split: str, schema: LabelSchema, teacher_response: str) -> dict[str, Any]:
    return {
        "split": split, "index": pair.index, "pair_id": pair.pair_id, "query_id": pair.query_id,
        "query": pair.query, "item_id": pair.item_id, "title": pair.title,
        "attributes": json.dumps(pair.attributes, ensure_ascii=False, separators=(",", ":")),
        "level": pair.level, "label": schema.by_level(pair.level).label, "query_kind": pair.query_kind,
        "category": pair.category, "brand": pair.brand, "price": pair.price, "source": pair.source,
        "schema": schema.name, "rules_used": list(pair.rules_used),
        "spec": pair.spec.to_json() if pair.spec is not None else "", "teacher_response": teacher_response,
    }


def prompt_messages(pair: Pair, cfg: BuildConfig) -> list[dict[str, str]]:
    """The chat prompt of a pair (system + user), via :func:`taosr1_verl.prompts.build_messages`."""
    return build_messages(pair.query, pair.title, pair.attributes, pair.description, schema=cfg.schema,
                          fmt=cfg.fmt, config=cfg.prompt)


def rl_row(pair: Pair, split: str, cfg: BuildConfig, teacher_response: str = "") -> dict[str, Any]:
    """One verl RLHFDataset row for a pair (see ``docs/data.md``)."""
    schema = get_schema(cfg.schema)
    return {
        "data_source": cfg.data_source,
        "prompt": prompt_messages(pair, cfg),
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": schema.by_level(pair.level).label},
        "extra_info": _extra_info(pair, split, schema, teacher_response),
    }


@dataclass
class BuildReport:
    """What a writer did: rows in and out, class counts and CV before/after, rows dropped and why."""

    path: str
    split: str
    n_in: int = 0
    n_out: int = 0
    counts_in: dict[int, int] = field(default_factory=dict)
    counts_out: dict[int, int] = field(default_factory=dict)
    cv_in: float = 0.0
    cv_out: float = 0.0
    balanced: bool = False
    dropped: dict[str, int] = field(default_factory=dict)
    """``{reason: count}`` (``balance`` for balancing, teacher problems for SFT)."""
    problems: list[dict[str, str]] = field(default_factory=list)
    """Per-pair problems (SFT: missing or invalid teacher answers), at most ``MAX_PROBLEMS`` kept."""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


MAX_PROBLEMS = 10_000


class AtomicParquet:
    """Batched ParquetWriter into a temp file beside ``path`` (:func:`taosr1_verl.files.temp_path`), renamed
    onto ``path`` on success and removed on any error (Ctrl-C included)."""

    def __init__(self, path: str | os.PathLike[str], schema: pa.Schema) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_path(self.path)
        self.schema = schema
        try:
            self.writer = pq.ParquetWriter(self.tmp, schema)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        self.rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def __enter__(self) -> AtomicParquet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.writer.close()
            if exc_type is None:
                replace(self.tmp, self.path)
            else:
                self.tmp.unlink(missing_ok=True)


def progress_iter(it: Iterable, total: int | None, desc: str, show: bool) -> Iterable:
    if not show:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, unit="pair", mininterval=1.0)


def _write_prompt_rows(pairs: Iterable[Pair], path: str | os.PathLike[str], *, split: str, balance: bool,
                       counts: Mapping[int, int] | None, per_class: int | None, seed: int, cfg: BuildConfig,
                       teacher: Callable[[Pair], str] | None, progress: bool) -> BuildReport:
    schema = get_schema(cfg.schema)
    if balance and counts is None:
        pairs = list(pairs)
        counts = Counter(p.level for p in pairs)
    total = sum(counts.values()) if counts is not None else (len(pairs) if isinstance(pairs, Sequence) else None)
    report = BuildReport(path=str(path), split=split, balanced=balance)
    sel = BalancedSelector(counts, balanced_targets(counts, per_class), seed) if balance else None
    c_in: Counter[int] = Counter()
    with AtomicParquet(path, RL_SCHEMA) as out:
        for pair in progress_iter(pairs, total, f"{split} rows", progress):
            lv = schema.normalize(pair.level)
            c_in[lv] += 1
            if sel is not None and not sel.keep(lv):
                continue
            out.add(rl_row(pair, split, cfg, teacher(pair) if teacher is not None else ""))
            report.n_out += 1
    levels = schema.level_values
    report.n_in = sum(c_in.values())
    report.counts_in = {lv: c_in.get(lv, 0) for lv in levels}
    report.counts_out = dict(sel.kept) if sel is not None else dict(report.counts_in)
    report.counts_out = {lv: report.counts_out.get(lv, 0) for lv in levels}
    report.cv_in = class_cv(report.counts_in)
    report.cv_out = class_cv(report.counts_out)
    if report.n_in != report.n_out:
        report.dropped = {"balance": report.n_in - report.n_out}
    missing = [lv for lv in levels if report.counts_in[lv] == 0]
    if missing:
        logger.warning("%s: no rows of level(s) %s; CV counts them as 0", path, missing)
    logger.info("%s: %d of %d rows, class CV %.3f -> %.3f", path, report.n_out, report.n_in, report.cv_in,
                report.cv_out)
    return report


def write_rl_parquet(
    pairs: Iterable[Pair], path: str | os.PathLike[str], *, split: str = "train", balance: bool = True,
    counts: Mapping[int, int] | None = None, per_class: int | None = None, seed: int = 0,
    config: BuildConfig | None = None, teacher: Callable[[Pair], str] | None = None, progress: bool = False,
) -> BuildReport:
    """Write a verl RLHFDataset parquet (class-balanced by default, TaoSR1's best RL setting).

    Args:
        pairs: the pairs (any iterable; with ``balance`` and no ``counts`` it is read into memory once).
        path: output parquet path (written atomically).
        split: ``extra_info.split`` value.
        balance: down-sample every class to the minority class count (CV 0), seeded.
        counts: per-class counts of ``pairs`` if known (lets balancing stream in one pass).
        per_class: cap of rows per class when balancing.
        seed: balancing seed.
        config: data source name, schema, format and prompt options.
        teacher: optional ``pair -> response`` stored as ``extra_info.teacher_response`` (the DPO stage uses
            it as the chosen answer when no sample is correct).
        progress: show a tqdm bar.

    Example:
        >>> import tempfile, os
        >>> from taosr1_verl.data.synth import generate_synthetic
        >>> d = tempfile.mkdtemp()
        >>> r = write_rl_parquet(generate_synthetic(400), os.path.join(d, "rl.parquet"))
        >>> r.cv_out, r.n_out == 4 * min(r.counts_in.values())
        (0.0, True)
    """
    return _write_prompt_rows(pairs, path, split=split, balance=balance, counts=counts, per_class=per_class,
                              seed=seed, cfg=config or BuildConfig(), teacher=teacher, progress=progress)


def write_eval_parquet(
    pairs: Iterable[Pair], path: str | os.PathLike[str], *, split: str = "test", config: BuildConfig | None = None,
    teacher: Callable[[Pair], str] | None = None, progress: bool = False,
) -> BuildReport:
    """Write an evaluation parquet: the RL layout, every pair kept (no balancing), ``split="test"``."""
    return _write_prompt_rows(pairs, path, split=split, balance=False, counts=None, per_class=None, seed=0,
                              cfg=config or BuildConfig(), teacher=teacher, progress=progress)


def write_sft_parquet(
    pairs: Iterable[Pair], path: str | os.PathLike[str], teacher: Mapping[str, str] | Callable[[Pair], str | None],
    *, split: str = "train", config: BuildConfig | None = None, progress: bool = False,
) -> BuildReport:
    """Write an SFT parquet (``messages`` = system, user, assistant post-CoT target) for verl's SFT trainer.

    ``teacher`` gives the assistant answer per pair: a ``{pair_id: response}`` mapping (e.g. from
    :func:`read_teacher_jsonl`) or a callable such as the rule teacher. Each answer is checked with the
    response parser and must carry the gold label; a missing, malformed or wrong-label answer drops the
    pair and is listed in ``report.problems`` (never used silently).

    Example:
        >>> import tempfile, os
        >>> from taosr1_verl.data.synth import generate_synthetic, rule_teacher
        >>> d = tempfile.mkdtemp()
        >>> r = write_sft_parquet(generate_synthetic(50), os.path.join(d, "sft.parquet"), rule_teacher)
        >>> r.n_out, r.dropped
        (50, {})
    """
    cfg = config or BuildConfig()
    schema = get_schema(cfg.schema)
    parse = make_parser(schema, cfg.fmt)
    get = teacher.get if isinstance(teacher, Mapping) else teacher
    report = BuildReport(path=str(path), split=split)
    c_in: Counter[int] = Counter()
    c_out: Counter[int] = Counter()
    dropped: Counter[str] = Counter()
    total = len(pairs) if isinstance(pairs, Sequence) else None
    with AtomicParquet(path, SFT_SCHEMA) as out:
        for pair in progress_iter(pairs, total, f"sft {split}", progress):
            lv = schema.normalize(pair.level)
            c_in[lv] += 1
            answer = get(pair.pair_id) if isinstance(teacher, Mapping) else get(pair)
            reason = None
            if answer is None:
                reason = "teacher_missing"
            else:
                parsed = parse(answer)
                if not parsed.ok:
                    reason = f"teacher_malformed:{parsed.error}"
                elif parsed.level != lv:
                    reason = "teacher_wrong_label"
            if reason is not None:
                dropped[reason] += 1
                if len(report.problems) < MAX_PROBLEMS:
                    report.problems.append({"pair_id": pair.pair_id, "reason": reason})
                continue
            answer = answer.strip()
            messages = [*prompt_messages(pair, cfg), {"role": "assistant", "content": answer}]
            out.add({"data_source": cfg.data_source, "messages": messages,
                     "extra_info": _extra_info(pair, split, schema, answer)})
            c_out[lv] += 1
    levels = schema.level_values
    report.n_in = sum(c_in.values())
    report.n_out = sum(c_out.values())
    report.counts_in = {lv: c_in.get(lv, 0) for lv in levels}
    report.counts_out = {lv: c_out.get(lv, 0) for lv in levels}
    report.cv_in, report.cv_out = class_cv(report.counts_in), class_cv(report.counts_out)
    report.dropped = dict(dropped)
    if dropped:
        logger.warning("%s: dropped %d of %d pairs for teacher problems: %s", path, sum(dropped.values()),
                       report.n_in, dict(dropped))
    return report


def read_teacher_jsonl(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a teacher file: one JSON object per line with ``pair_id`` and ``response`` (strings).

    Raises ``ValueError`` naming the file and line for broken JSON, missing fields or a duplicate pair id.
    """
    out: dict[str, str] = {}
    for lineno, row in iter_jsonl(path):
        for key in ("pair_id", "response"):
            if not isinstance(row.get(key), str):
                raise ValueError(f"{path}:{lineno}: field {key!r} missing or not a string")
        if row["pair_id"] in out:
            raise ValueError(f"{path}:{lineno}: duplicate pair_id {row['pair_id']!r}")
        out[row["pair_id"]] = row["response"]
    return out


def write_teacher_jsonl(pairs: Iterable[Pair], path: str | os.PathLike[str], teacher: Callable[[Pair], str]) -> int:
    """Write ``{"pair_id", "response"}`` lines for ``pairs`` (atomically); returns the number written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for pair in pairs:
            f.write(json.dumps({"pair_id": pair.pair_id, "response": teacher(pair)}, ensure_ascii=False) + "\n")
            n += 1
    return n


# ---- pairs parquet (the normalised intermediate) ------------------------------------------------
def write_pairs_parquet(pairs: Iterable[Pair], path: str | os.PathLike[str], progress: bool = False) -> int:
    """Write pairs in the flat ``PAIRS_SCHEMA`` layout (one row per :meth:`Pair.to_record`); returns rows."""
    n = 0
    total = len(pairs) if isinstance(pairs, Sequence) else None
    with AtomicParquet(path, PAIRS_SCHEMA) as out:
        for pair in progress_iter(pairs, total, "pairs", progress):
            out.add(pair.to_record())
            n += 1
    return n


def iter_pairs_parquet(path: str | os.PathLike[str], batch_size: int = BATCH_ROWS) -> Iterator[Pair]:
    """Stream :class:`Pair` objects back from a pairs parquet (bounded memory)."""
    pf = pq.ParquetFile(path)
    missing = [c for c in ("pair_id", "index", "query", "title", "level") if c not in pf.schema_arrow.names]
    if missing:
        raise ValueError(f"{path}: not a pairs parquet (missing column(s) {missing}; columns are "
                         f"{pf.schema_arrow.names})")
    for batch in pf.iter_batches(batch_size=batch_size):
        for rec in batch.to_pylist():
            yield Pair.from_record(rec)


def level_counts_parquet(path: str | os.PathLike[str]) -> dict[int, int]:
    """Per-level counts of a pairs parquet, reading only the ``level`` column."""
    import pyarrow.compute as pc

    col = pq.read_table(path, columns=["level"]).column("level")
    vc = pc.value_counts(col)
    return {int(d["values"]): int(d["counts"]) for d in vc.to_pylist()}
