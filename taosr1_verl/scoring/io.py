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
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

ITEM_FIELDS = ("title", "attributes", "description")
DEFAULT_MAX_CHARS = 5000
INPUT_FORMATS: tuple[str, ...] = ("jsonl", "csv", "tsv")
"""Formats of the score input (``taosr1 score --input-format``)."""


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
    # strict: a quote that never closes is an error ("unexpected end of data"), not the rest of the file
    # swallowed into one field.
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    rows: list[ScoreRow] = []
    header: list[str] | None = None
    end = 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            where = f"{name}:{start}"
            if not record:  # a blank line
                continue
            if header is None:
                header = [c.strip() for c in record]
                dup = sorted({c for c in header if header.count(c) > 1})
                if dup:
                    raise ValueError(f"{where}: duplicate column(s) {dup} in the header")
                missing = [c for c in ("query", "title") if c not in header]
                if missing:
                    raise ValueError(f"{name}: missing column(s) {missing}; the header has {header}")
                continue
            if len(record) != len(header):
                raise ValueError(f"{where}: {len(record)} fields, the header has {len(header)}")
            rec = dict(zip(header, record, strict=True))
            rows.append(_row(rec, rec.get("query"), where, max_chars))
    except csv.Error as e:
        raise ValueError(f"{name}:{end + 1}: not valid {'CSV' if delimiter == ',' else 'TSV'} ({e})") from None
    if header is None:
        raise ValueError(f"{name}: empty file (expected a header with 'query' and 'title')")
    return rows


def _decode(data: bytes, name: str) -> str:
    """UTF-8 text of a whole input (a BOM is dropped); bad bytes are named by line and column."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(f"{name}:{line}: not valid UTF-8 (byte {col} of the line)") from None


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
    if fmt is not None and fmt not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; use jsonl, csv or tsv")
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such input file")
        if path.is_dir():
            raise IsADirectoryError(f"{path}: is a directory; give a JSONL, CSV or TSV file")
        if fmt is None and path.suffix.lower() == ".parquet":
            raise ValueError(f"{path}: parquet is not a score input; use JSONL, CSV or TSV (--input-format)")
        fmt = fmt or {".csv": "csv", ".tsv": "tsv"}.get(path.suffix.lower(), "jsonl")
        return _read(io.StringIO(_decode(path.read_bytes(), str(path)), newline=""), str(path), fmt, max_chars)
    name = getattr(source, "name", "<stdin>")
    name = name if isinstance(name, str) and not name.startswith("<") else "<stdin>"
    buffer = getattr(source, "buffer", None)
    if buffer is not None:  # a real stdin/file object: decode it ourselves to name bad bytes
        source = io.StringIO(_decode(buffer.read(), name), newline="")
    return _read(source, name, fmt or "jsonl", max_chars)


def _read(text: TextIO, name: str, fmt: str, max_chars: int) -> list[ScoreRow]:
    if fmt in ("csv", "tsv"):
        return _from_csv(text, name, "," if fmt == "csv" else "\t", max_chars)
    return _from_jsonl(text, name, max_chars)
