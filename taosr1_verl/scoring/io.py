"""Input of ``taosr1 score``: (query, item) rows from JSONL, CSV or TSV, with every bad row named.

Accepted shapes (one per file):

* JSONL, one query per line: ``{"query": "...", "items": [{"title": "...", "attributes": {...}}, ...]}``
* JSONL, one pair per line: ``{"query": "...", "title": "...", "attributes": ..., "description": ...}``
* CSV/TSV with a header holding at least ``query`` and ``title`` (``attributes`` may be a JSON object or
  ``key: value; ...`` text, ``description`` optional).

Rows keep their input order; items of one query are scored together (shared prefix).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

ITEM_FIELDS = ("title", "attributes", "description")
DEFAULT_MAX_CHARS = 5000


@dataclass(frozen=True)
class ScoreRow:
    """One (query, item) pair to score; ``where`` names its place in the input for messages."""

    where: str
    query: str
    title: str
    attributes: dict[str, Any] | str | None
    description: str | None


def _text(value: Any, where: str, field: str, max_chars: int, required: bool) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(f"{where}: field {field!r} is empty")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {field!r} must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise ValueError(f"{where}: field {field!r} has {len(value)} characters, more than --max-chars={max_chars}")
    return value


def _attributes(value: Any, where: str, max_chars: int) -> dict[str, Any] | str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("{"):
            try:
                value = json.loads(s)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: field 'attributes' is not valid JSON ({e.msg})") from None
        else:
            return _text(s, where, "attributes", max_chars, False)
    if not isinstance(value, dict):
        raise ValueError(f"{where}: field 'attributes' must be an object or text, got {type(value).__name__}")
    if len(json.dumps(value, default=str)) > max_chars:
        raise ValueError(f"{where}: field 'attributes' is longer than --max-chars={max_chars}")
    return value


def _row(rec: dict[str, Any], query: Any, where: str, max_chars: int) -> ScoreRow:
    q = _text(query, where, "query", max_chars, True)
    t = _text(rec.get("title"), where, "title", max_chars, True)
    return ScoreRow(where, q, t, _attributes(rec.get("attributes"), where, max_chars),
                    _text(rec.get("description"), where, "description", max_chars, False))


def _from_jsonl(lines: Iterable[str], name: str, max_chars: int) -> list[ScoreRow]:
    rows: list[ScoreRow] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict) or "query" not in rec:
            raise ValueError(f"{where}: expected an object with a 'query' field and 'items' or 'title'")
        if "items" in rec:
            items = rec["items"]
            if not isinstance(items, list) or not items:
                raise ValueError(f"{where}: field 'items' must be a non-empty list")
            for j, it in enumerate(items):
                if not isinstance(it, dict):
                    raise ValueError(f"{where}: item {j}: must be an object with a 'title'")
                rows.append(_row(it, rec["query"], f"{where}: item {j}", max_chars))
        elif "title" in rec:
            rows.append(_row(rec, rec["query"], where, max_chars))
        else:
            raise ValueError(f"{where}: missing field 'items' (one query, many items) or 'title' (one pair)")
    return rows


def _from_csv(text: TextIO, name: str, delimiter: str, max_chars: int) -> list[ScoreRow]:
    reader = csv.DictReader(text, delimiter=delimiter)
    cols = reader.fieldnames or []
    missing = [c for c in ("query", "title") if c not in cols]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; the header has {cols}")
    return [_row(rec, rec.get("query"), f"{name}:{i}", max_chars) for i, rec in enumerate(reader, 2)]


def read_score_input(source: str | os.PathLike[str] | TextIO, fmt: str | None = None,
                     max_chars: int = DEFAULT_MAX_CHARS) -> list[ScoreRow]:
    """Read pairs from a path (``.jsonl``/``.json``, ``.csv``, ``.tsv``) or a text stream (JSONL unless ``fmt``).

    Raises ``ValueError`` naming file, line and field for the first bad row; nothing is dropped silently.

    Example:
        >>> import io
        >>> rows = read_score_input(io.StringIO('{"query": "oak table", "items": [{"title": "Oak desk"}]}'))
        >>> rows[0].query, rows[0].title, rows[0].where
        ('oak table', 'Oak desk', '<stdin>:1: item 0')
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such input file")
        fmt = fmt or {".csv": "csv", ".tsv": "tsv"}.get(path.suffix.lower(), "jsonl")
        with open(path, encoding="utf-8", newline="") as f:
            return read_score_input(f, fmt, max_chars) if fmt != "jsonl" else _from_jsonl(f, str(path), max_chars)
    name = getattr(source, "name", "<stdin>")
    name = name if isinstance(name, str) and not name.startswith("<") else "<stdin>"
    if fmt in ("csv", "tsv"):
        return _from_csv(source, name, "," if fmt == "csv" else "\t", max_chars)
    if fmt not in (None, "jsonl"):
        raise ValueError(f"unknown input format {fmt!r}; use jsonl, csv or tsv")
    return _from_jsonl(source, name, max_chars)
