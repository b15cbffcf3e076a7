"""Readers and writers of the pass@N stage.

Inputs:

* prompts: the RL parquet (verl ``RLHFDataset`` layout: ``prompt`` = chat messages,
  ``reward_model.ground_truth``, ``extra_info.index``; optional ``extra_info.pair_id``);
* responses generated elsewhere: verl ``main_generation_server`` output (the input parquet plus a
  ``responses`` column, a list of N strings per row), or JSONL with either ``{"index", "responses": [...]}``
  per prompt or ``{"index", "response"}`` per sample;
* teacher answers: JSONL ``{"pair_id", "response"}`` (``pair_id`` matched against ``extra_info.pair_id``,
  else against the dataset index as a string), or, without a teacher file, the RL row's own
  ``extra_info.teacher_response`` (written by the data builders, see docs/data.md).

Outputs (all written atomically: temp file then ``os.replace``): the samples JSONL (resumable), the pairs
file (parquet + optional JSONL, TRL conversational ``prompt/chosen/rejected``), the difficulty parquet,
and the report (markdown, JSON, pass@k PNG).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taosr1_verl import rl_rows
from taosr1_verl.files import atomic_path, atomic_write_bytes, drop_torn_tail, iter_jsonl

logger = logging.getLogger(__name__)

DIFFICULTY_COLUMNS: tuple[str, ...] = ("index", "n", "correct", "pass_rate", "pass_at_k")


@dataclass
class PromptRow:
    """One RL prompt: what pass@N samples and grades."""

    index: int
    prompt: list[dict[str, str]]
    ground_truth: Any
    pair_id: str
    data_source: str = ""
    teacher: str | None = None
    """``extra_info.teacher_response`` when the data builder stored one (empty means none)."""


# ---- helpers ------------------------------------------------------------------------------------


def _atomic_parquet(table: Any, path: str | os.PathLike[str]) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


# ---- prompts --------------------------------------------------------------------------------------


def rows_to_prompts(rows: Iterable[Mapping[str, Any]], source: str, prompt_key: str = "prompt") -> list[PromptRow]:
    """Validate RL rows (:mod:`taosr1_verl.rl_rows`); raises ``ValueError`` naming the file, row and field of the
    first bad one. Two rows with one ``extra_info.index`` are an error: outputs are keyed by it."""
    out: list[PromptRow] = []
    seen: dict[int, int] = {}
    for r, row in enumerate(rows):
        where = f"{source} row {r}"
        msgs = rl_rows.prompt_messages(row, where, prompt_key)
        gt = rl_rows.ground_truth(row, where)
        idx = rl_rows.row_index(row, where)
        if idx in seen:
            raise ValueError(f"{where}: extra_info.index {idx} already used by row {seen[idx]}")
        seen[idx] = r
        info = row.get("extra_info") or {}
        pair_id = info.get("pair_id")
        teacher = info.get("teacher_response")
        teacher = teacher if isinstance(teacher, str) and teacher.strip() else None
        pid = str(pair_id) if pair_id is not None else str(idx)
        out.append(PromptRow(idx, msgs, gt, pid, rl_rows.data_source(row, where), teacher))
    return out


def read_prompts(path: str | os.PathLike[str], prompt_key: str = "prompt") -> list[PromptRow]:
    """Read the RL parquet (or JSONL) of prompts."""
    return rows_to_prompts(_read_rows(path), str(path), prompt_key)


def _read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix in (".jsonl", ".json"):
        return [row for _, row in iter_jsonl(path)]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


# ---- teacher --------------------------------------------------------------------------------------


def read_teacher(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{pair_id: response}`` from a teacher JSONL (``{"pair_id": ..., "response": ...}`` per line); the
    format and its checks are the data stage's (:func:`taosr1_verl.data.builders.read_teacher_jsonl`)."""
    from taosr1_verl.data.builders import read_teacher_jsonl

    return read_teacher_jsonl(path)


# ---- responses ------------------------------------------------------------------------------------


@dataclass
class ResponseSet:
    """Responses per dataset index, plus rows that could not be used (with the reason)."""

    responses: dict[int, list[str]]
    n_tokens: dict[int, list[int]]
    dropped: list[dict[str, Any]]


def read_responses(path: str | os.PathLike[str], prompt_key: str = "prompt") -> tuple[ResponseSet, list[PromptRow] | None]:
    """Read externally generated responses.

    * ``.parquet``: verl ``main_generation_server`` output (RL rows + ``responses``); the prompts come with
      it and are returned as the second item.
    * ``.jsonl``: per prompt ``{"index", "responses": [...]}`` or per sample ``{"index", "response"}``
      (optional ``n_tokens``); the prompts must come from the RL parquet (second item ``None``). A prompt
      gets its responses from one per-prompt line or from per-sample lines: a second per-prompt line for
      an index (or a mix of both kinds) is not merged but dropped and listed in ``dropped`` with the line
      that gave the prompt's responses first.

    Non-string responses are kept as their ``str()``: they are graded as malformed, never trusted.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    rs = ResponseSet({}, {}, [])
    if path.suffix == ".parquet":
        rows = _read_rows(path)
        prompts = rows_to_prompts(rows, str(path), prompt_key)
        for r, (row, p) in enumerate(zip(rows, prompts, strict=True)):
            resp = row.get("responses")
            if hasattr(resp, "tolist"):
                resp = resp.tolist()
            if not isinstance(resp, list):
                raise ValueError(f"{path} row {r}: field 'responses' must be a list of strings (verl generation output)")
            rs.responses[p.index] = [x if isinstance(x, str) else str(x) for x in resp]
        return rs, prompts
    first: dict[int, tuple[int, bool]] = {}  # index -> (line of its first responses, per-prompt line?)
    for lineno, row in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if "index" not in row:
            raise ValueError(f"{where}: missing field 'index'")
        idx = rl_rows.check_index(row["index"], where, "index")
        per_prompt = "responses" in row
        seen = first.setdefault(idx, (lineno, per_prompt))
        if seen[0] != lineno and (per_prompt or seen[1]):
            n = len(row["responses"]) if per_prompt and isinstance(row["responses"], list) else 1
            rs.dropped.append({"index": idx, "line": lineno, "responses": n,
                               "reason": f"duplicate: line {seen[0]} already gave this prompt's responses"})
            logger.warning("%s: index %d already has responses from line %d; this line is dropped, not merged",
                           where, idx, seen[0])
            continue
        if per_prompt:
            resp = row["responses"]
            if not isinstance(resp, list):
                raise ValueError(f"{where}: field 'responses' must be a list")
            texts = [x if isinstance(x, str) else str(x) for x in resp]
            tok_list = _n_tokens(row.get("n_tokens"), len(texts), where)
        elif "response" in row:
            x = row["response"]
            texts = [x if isinstance(x, str) else str(x)]
            toks = row.get("n_tokens")
            tok_list = _n_tokens(toks if toks is None else [toks], 1, where)
        else:
            raise ValueError(f"{where}: needs a 'responses' list or a 'response' field")
        rs.responses.setdefault(idx, []).extend(texts)
        if tok_list is not None:
            rs.n_tokens.setdefault(idx, []).extend(tok_list)
    return rs, None


def _n_tokens(value: Any, n: int, where: str) -> list[int] | None:
    """The optional ``n_tokens`` field: ``n`` token counts (ints >= 0), or ``None`` when absent."""
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == n
            and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)):
        raise ValueError(f"{where}: field 'n_tokens' must hold {n} token count(s) (ints >= 0), one per response, "
                         f"got {value!r}")
    return value


def read_samples_done(path: str | os.PathLike[str]) -> ResponseSet:
    """Read our own samples JSONL for resuming; a truncated last line (a killed run) is ignored."""
    rs = ResponseSet({}, {}, [])
    path = Path(path)
    if not path.exists():
        return rs
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                idx = int(row["index"])
                rs.responses[idx] = list(row["responses"])
                rs.n_tokens[idx] = [int(t) for t in row.get("n_tokens", [])]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                logger.warning("%s:%d: incomplete line ignored (will be regenerated)", path, lineno)
    return rs


def append_samples(path: str | os.PathLike[str], indices: Sequence[int], samples: Sequence[Sequence[Any]]) -> None:
    """Append one JSON line per prompt and fsync, so a killed run resumes after the last whole chunk."""
    lines = []
    for idx, ss in zip(indices, samples, strict=True):
        lines.append(json.dumps({"index": int(idx), "responses": [s.text for s in ss], "n_tokens": [s.n_tokens for s in ss]}))
    drop_torn_tail(path)
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ---- writers --------------------------------------------------------------------------------------


def write_pairs(pairs: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], jsonl: bool = False) -> Path:
    """Write the pairs parquet (TRL conversational ``prompt``/``chosen``/``rejected`` + provenance)."""
    import pyarrow as pa

    msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    schema = pa.schema(
        [
            ("prompt", msg),
            ("chosen", msg),
            ("rejected", msg),
            ("index", pa.int64()),
            ("gold", pa.int64()),
            ("chosen_source", pa.string()),
            ("chosen_pred", pa.int64()),
            ("rejected_pred", pa.int64()),
            ("rejected_format_ok", pa.int64()),
            ("n", pa.int64()),
            ("correct", pa.int64()),
        ]
    )
    table = pa.Table.from_pylist([{k: p[k] for k in schema.names} for p in pairs], schema=schema)
    path = Path(path)
    _atomic_parquet(table, path)
    if jsonl:
        data = "".join(json.dumps({k: p[k] for k in schema.names}, ensure_ascii=False) + "\n" for p in pairs)
        atomic_write_bytes(path.with_suffix(".jsonl"), data.encode("utf-8"))
    return path


def write_difficulty(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write the difficulty parquet read by the dynamic sampler (columns :data:`DIFFICULTY_COLUMNS`)."""
    import pyarrow as pa

    schema = pa.schema(
        [
            ("index", pa.int64()),
            ("n", pa.int64()),
            ("correct", pa.int64()),
            ("pass_rate", pa.float64()),
            ("pass_at_k", pa.list_(pa.float64())),
            ("format_ok", pa.int64()),
        ]
    )
    table = pa.Table.from_pylist([{k: r[k] for k in schema.names} for r in rows], schema=schema)
    _atomic_parquet(table, path)
    return Path(path)


def read_difficulty(path: str | os.PathLike[str]) -> dict[int, dict[str, Any]]:
    """``{index: row}`` from a difficulty parquet (the reader the dynamic sampler can use)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = [c for c in DIFFICULTY_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not a difficulty file, missing columns {missing}")
    return {int(r["index"]): r for r in table.to_pylist()}
