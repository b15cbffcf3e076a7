"""Raw judgments -> :class:`~taosr1_verl.data.pairs.Pair`: a generic column-mapped reader for CSV, TSV,
JSONL and parquet, and presets for Amazon ESCI and Wayfair WANDS.

Everything streams (CSV/TSV row by row, parquet in record batches), so memory stays bounded whatever the
file size; only the duplicate check keeps one small int per distinct (query, item) key. Row numbers in
errors are 1-based data rows (the header is not counted; for JSONL, the line number). ``Pair.index`` is
the 0-based data row of the judgment file, so it is unique and stable for a given input.

Nothing is lost or guessed: blank lines and a UTF-8 BOM are skipped; a CSV quote that is never closed (or
runs past :data:`MAX_FIELD_CHARS` / :data:`MAX_RECORD_LINES`) is a bad row named by the line where it
opened, and reading resumes on the next line, so the rows it swallowed are read and counted; a column
named twice is an error; a value of the wrong type (a list or object where text is declared, bytes that
are not UTF-8) is a bad row, never its ``str()``. Text is NFC-normalised (Unicode) before it is stored,
split by query and checked for duplicates.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import unicodedata
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, fields
from itertools import chain
from pathlib import Path
from typing import Any

from taosr1_verl.data.errors import DataError, DropReport, OnError, RowGate
from taosr1_verl.data.pairs import Pair
from taosr1_verl.data.split import normalize_query
from taosr1_verl.schema import LabelSchema, get_schema

logger = logging.getLogger(__name__)

MAX_FIELD_CHARS = 1 << 20
"""Longest CSV field (product descriptions can be long; a runaway quote must not eat the file)."""
MAX_RECORD_LINES = 1000
"""Most physical lines one CSV record may span (quoted fields with line breaks)."""
csv.field_size_limit(MAX_FIELD_CHARS)
FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "parquet")
MAX_FEATURES = 12
"""WANDS ``product_features`` has dozens of ``key:value`` pairs; keep the first ones (prompts truncate anyway)."""


@dataclass(frozen=True)
class ColumnMap:
    """Which input column holds which field. Only ``query``, ``title`` and ``label`` are required."""

    query: str = "query"
    title: str = "title"
    label: str = "label"
    attributes: str | None = None
    """One column with all attributes: a JSON object, or ``key:value`` pairs separated by ``|`` or ``;``."""
    attribute_columns: tuple[str, ...] = ()
    """Columns shown as attributes under their own names (e.g. ``brand``, ``color``)."""
    description: str | None = None
    query_id: str | None = None
    item_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> ColumnMap:
        """``"query=search_term,title=product_title,label=grade,attribute_columns=brand+color"``.

        Example:
            >>> ColumnMap.parse("query=q,title=name,attribute_columns=brand+color").attribute_columns
            ('brand', 'color')
        """
        names = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in names:
                raise ValueError(f"column map {part!r}: expected field=column with field one of {sorted(names)}")
            kw[key] = tuple(v for v in value.split("+") if v) if key == "attribute_columns" else value.strip()
        return cls(**kw)

    def required(self) -> list[str]:
        cols = [self.query, self.title, self.label, *self.attribute_columns]
        cols += [c for c in (self.attributes, self.description, self.query_id, self.item_id) if c]
        return cols


def detect_format(path: str | os.PathLike[str]) -> str:
    """``csv``, ``tsv``, ``jsonl`` or ``parquet`` from the file name."""
    name = str(path).lower()
    for ext, fmt in ((".parquet", "parquet"), (".pq", "parquet"), (".jsonl", "jsonl"), (".json", "jsonl"),
                     (".tsv", "tsv"), (".tab", "tsv"), (".csv", "csv"), (".txt", "tsv")):
        if name.endswith(ext):
            return fmt
    raise ValueError(f"{path}: cannot tell the format from the name; pass fmt= one of {FORMATS}")


@dataclass(frozen=True, slots=True)
class RawRow:
    """One input row: ``values`` or, for an unreadable line (bad JSON), ``error``."""

    row: int
    values: dict[str, Any] | None
    error: DataError | None = None


def _check_columns(path: str, have: list[str], need: list[str]) -> None:
    seen: set[str] = set()
    for name in have:
        if name in seen:
            raise DataError(path, None, name, "duplicate_column",
                            f"column {name!r} appears more than once in the header {have}")
        seen.add(name)
    missing = [c for c in need if c not in have]
    if missing:
        raise DataError(path, None, missing[0], "missing_column",
                        f"missing column(s) {missing}; the file has {have}")


class _Lines:
    """Feeds ``csv.reader`` one physical line at a time, keeping the lines of the record being parsed
    (``buf``) and knowing when the file has ended (one line of look-ahead)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.it = lines
        self.buf: list[str] = []
        self.ahead = next(lines, None)

    def __iter__(self) -> Iterator[str]:
        it, buf = self.it, self.buf
        while (line := self.ahead) is not None:
            self.ahead = next(it, None)
            buf.append(line)
            yield line

    def rest(self, replay: list[str]) -> Iterator[str]:
        """``replay`` followed by every line not read yet."""
        return chain(replay, [self.ahead] if self.ahead is not None else [], self.it)


def _unterminated(text: str, delim: str) -> bool:
    try:
        for _ in csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=True):
            pass
    except csv.Error as e:
        return "end of data" in str(e)
    return False


def _iter_csv(path: str, delim: str, columns: list[str], single_line: Collection[str]) -> Iterator[RawRow]:
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        src = _Lines(iter(f))
        reader = csv.reader(src, delimiter=delim)
        header = next(reader, None)
        while header is not None and not "".join(header).strip():  # blank lines before the header
            header = next(reader, None)
        if header is None:
            raise DataError(path, None, None, "empty_file", "empty file (no header)")
        if len(src.buf) > 1:
            raise DataError(path, None, None, "unclosed_quote", "the header has a quote that is not closed on line 1")
        header = [h.strip().lstrip("\ufeff") for h in header]
        _check_columns(path, header, columns)
        ncol = len(header)
        one_line = [i for i, h in enumerate(header) if h in single_line]
        line = len(src.buf) + 1  # physical line where the next record starts
        src.buf.clear()
        row = 0
        while True:
            try:
                rec = next(reader)
                err = None
            except StopIteration:
                break
            except csv.Error as e:  # a NUL byte, a field over MAX_FIELD_CHARS
                rec, err = [], str(e)
            buf = src.buf
            n = len(buf)
            if n == 1 and err is None and src.ahead is not None:  # the common case: one line, not the last
                start, line = line, line + 1
                buf.clear()
                if len(rec) == ncol:
                    row += 1
                    yield RawRow(row, dict(zip(header, rec, strict=True)))
                    continue
                if len(rec) <= 1 and not "".join(rec).strip():
                    continue  # a blank line is not a record
                row += 1
                yield RawRow(row, None, DataError(path, row, None, "bad_row",
                                                  f"line {start}: {len(rec)} fields, the header has {ncol}"))
                continue
            start = line
            text = "".join(buf)
            if not text.strip() and err is None:
                line += n
                buf.clear()
                continue
            row += 1
            bad = None
            if err is not None:
                bad = ("unclosed_quote" if "field limit" in err else "bad_row", f"line {start}: {err}")
            elif src.ahead is None and _unterminated(text, delim):
                bad = ("unclosed_quote", f"a quoted field opens on line {start} and is never closed (it runs to "
                                         f"the end of the file, {n} lines)")
            elif n > MAX_RECORD_LINES:
                bad = ("unclosed_quote", f"a quoted field opens on line {start} and spans {n} lines (more than "
                                         f"{MAX_RECORD_LINES}): a quote that is not closed?")
            elif len(rec) != ncol:
                bad = ("bad_row", f"line {start}: {len(rec)} fields, the header has {ncol}"
                       + (f" (the record spans {n} lines: a quote that is not closed?)" if n > 1 else ""))
            elif n > 1 and (broken := [header[i] for i in one_line if "\n" in rec[i] or "\r" in rec[i]]):
                bad = ("unclosed_quote", f"field {broken[0]!r} has a line break: a quote opened on line {start} is "
                                         f"not closed where it should be (the record spans {n} lines)")
            if bad is None:
                line += n
                buf.clear()
                yield RawRow(row, dict(zip(header, rec, strict=True)))
                continue
            yield RawRow(row, None, DataError(path, row, None, *bad))
            if n > 1:  # read the lines this record swallowed again, as records of their own
                replay = buf[1:]
                line = start + 1
                src = _Lines(src.rest(replay))
                reader = csv.reader(src, delimiter=delim)
            else:
                line += n
                buf.clear()


class _DuplicateKey(ValueError):
    pass


def _object_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(dup)
    return obj


def iter_raw_rows(path: str | os.PathLike[str], fmt: str | None = None, columns: list[str] | None = None,
                  delimiter: str | None = None, single_line: Collection[str] = ()) -> Iterator[RawRow]:
    """Stream the rows of a CSV/TSV/JSONL/parquet file as dicts, checking ``columns`` exist up front.

    Text is decoded as UTF-8 with undecodable bytes kept as surrogates, so that :class:`PairValidator`
    can name the row and field of broken encoding instead of failing on the whole file. Blank lines are
    not rows; a bad line (unclosed quote, wrong field count, broken JSON, a key given twice) is a row with
    ``error`` set. CSV/TSV values of the ``single_line`` columns (queries, titles, labels, ids) must not hold
    a line break: one that does marks a quote that opened there and closed rows later, and the row is bad
    (its swallowed lines are read again as rows of their own).
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(path, None, None, "not_a_file", "is a directory, expected a judgment file")
    fmt = fmt or detect_format(path)
    if fmt in ("csv", "tsv"):
        yield from _iter_csv(path, delimiter or ("\t" if fmt == "tsv" else ","), columns or [], set(single_line))
    elif fmt == "jsonl":
        checked = False
        with open(path, encoding="utf-8-sig", errors="surrogateescape") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line, object_pairs_hook=_object_no_duplicates)
                except json.JSONDecodeError as e:
                    yield RawRow(i, None, DataError(path, i, None, "bad_json", f"not valid JSON ({e.msg})"))
                    continue
                except _DuplicateKey as e:
                    yield RawRow(i, None, DataError(path, i, str(e), "bad_json", f"key {str(e)!r} appears twice"))
                    continue
                if not isinstance(obj, dict):
                    yield RawRow(i, None, DataError(path, i, None, "bad_json", "expected a JSON object"))
                    continue
                if not checked:
                    _check_columns(path, list(obj), columns or [])
                    checked = True
                yield RawRow(i, obj)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several types for a file that is not parquet
            raise DataError(path, None, None, "not_parquet", f"cannot read as parquet ({e})") from None
        have = pf.schema_arrow.names
        _check_columns(path, have, columns or [])
        i = 0
        for batch in pf.iter_batches(batch_size=8192, columns=list(dict.fromkeys(columns)) if columns else None):
            for rec in batch.to_pylist():
                i += 1
                yield RawRow(i, rec)
    else:
        raise ValueError(f"{path}: unknown format {fmt!r}; expected one of {FORMATS}")


class BadValue(ValueError):
    """A field value of the wrong type or encoding: ``reason`` is a drop reason, the message its detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def as_text(v: Any, *, scalars: bool = False) -> str:
    """A field value as stripped NFC text: ``str``, UTF-8 ``bytes`` (parquet binary columns); ``None`` and
    NaN (missing) give ``""``. With ``scalars`` also ints, floats and bools (ids, attribute values).

    Anything else (lists, objects, bytes that are not UTF-8) raises :class:`BadValue`: it is never turned
    into its ``str()``.

    Example:
        >>> as_text(" Cafe\u0301 "), as_text(b"oak"), as_text(12, scalars=True)
        ('Café', 'oak', '12')
    """
    if type(v) is not str:
        if v is None or (type(v) is float and v != v):
            return ""
        if isinstance(v, (bytes, bytearray, memoryview)):
            try:
                v = bytes(v).decode("utf-8")
            except UnicodeDecodeError:
                raise BadValue("bad_encoding", "bytes that are not UTF-8: " + _short(bytes(v))) from None
        elif isinstance(v, str):
            v = str(v)
        elif scalars and isinstance(v, bool):
            v = "true" if v else "false"
        elif scalars and isinstance(v, int):
            v = str(v)
        elif scalars and isinstance(v, float):
            v = str(int(v)) if v.is_integer() else repr(v)
        else:
            raise BadValue("bad_type", f"expected text, got {type(v).__name__} {_short(v)}")
    v = v.strip()
    return v if v.isascii() else unicodedata.normalize("NFC", v)


def parse_attributes(value: Any) -> dict[str, str]:
    """Attributes from a JSON object (or its text), or ``key:value`` pairs split by ``|`` or ``;``.

    Values must be text or numbers; a nested list or object raises :class:`BadValue` (``bad_type``).

    Example:
        >>> parse_attributes("color:red|material:oak")
        {'color': 'red', 'material': 'oak'}
        >>> parse_attributes('{"size": "L"}')
        {'size': 'L'}
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for k, v in value.items():
            if type(v) is str and v.isascii():  # the common case, without a call
                t = v.strip()
            else:
                try:
                    t = as_text(v, scalars=True)
                except BadValue as e:
                    raise BadValue(e.reason, f"attribute {str(k)!r}: {e}") from None
            if t:
                out[k if type(k) is str and k.isascii() else as_text(str(k))] = t
        return out
    text = as_text(value)
    if not text:
        return {}
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            return parse_attributes(obj)
    sep = "|" if "|" in text else ";"
    out = {}
    for part in text.split(sep):
        key, colon, val = part.partition(":")
        if colon and key.strip() and val.strip():
            out.setdefault(key.strip(), val.strip())
    return out


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class PairValidator:
    """Checks one row's fields and builds the :class:`Pair`, or routes the problem through the gate.

    Checks: the type of each field (text where text is declared), broken encoding (any field), empty query,
    empty title, missing or unknown label, and duplicates of a (query, item) key (queries and titles
    compared NFC-normalised, case-folded, whitespace collapsed): a repeat with the same label is dropped as
    ``duplicate``, with another label as ``conflicting_duplicate`` (the first occurrence is kept in both cases).
    """

    def __init__(self, file: str, schema: LabelSchema, gate: RowGate, source: str) -> None:
        self.file, self.schema, self.gate, self.source = str(file), schema, gate, source
        self.seen: dict[int, int] = {}  # hash(query, item) -> row * 16 + level

    def make(self, row: int, *, query: Any, title: Any, label: Any, attributes: dict[str, str] | None = None,
             description: Any = None, query_id: Any = None, item_id: Any = None, brand: str = "",
             category: str = "", names: Mapping[str, str] | None = None) -> Pair | None:
        names = names or {}
        f = self.file
        fname = "query"
        try:  # ASCII text skips the call (the common case on the hot path)
            q = query.strip() if type(query) is str and query.isascii() else as_text(query)
            fname = "title"
            t = title.strip() if type(title) is str and title.isascii() else as_text(title)
            fname = "description"
            d = as_text(description) if description is not None else ""
            fname = "query_id"
            qid = (query_id.strip() if type(query_id) is str and query_id.isascii()
                   else as_text(query_id, scalars=True))
            fname = "item_id"
            iid = item_id.strip() if type(item_id) is str and item_id.isascii() else as_text(item_id, scalars=True)
            fname = "label"
            lab = label.strip() if type(label) is str else label
            if isinstance(lab, (bytes, bytearray, memoryview)):
                lab = as_text(lab)
            elif not (lab is None or isinstance(lab, (str, int, float))):
                raise BadValue("bad_type", f"expected a label, got {type(lab).__name__} {_short(lab)}")
        except BadValue as e:
            return self._fail(DataError(f, row, names.get(fname, fname), e.reason, str(e)))
        attrs = attributes or {}
        if _has_surrogates("".join((q, t, d, qid, iid, *attrs, *attrs.values()))):  # one check on the fast path
            for fname, val in (("query", q), ("title", t), ("description", d), ("query_id", qid),
                               ("item_id", iid), *attrs.items()):
                if _has_surrogates(val) or _has_surrogates(fname):
                    return self._fail(DataError(f, row, names.get(fname, fname), "bad_encoding",
                                                "not valid UTF-8: " + val.encode("utf-8", "backslashreplace")
                                                .decode("ascii", "replace")[:60]))
        if not q:
            return self._fail(DataError(f, row, names.get("query", "query"), "empty_query", "empty query"))
        if not t:
            return self._fail(DataError(f, row, names.get("title", "title"), "empty_title", "empty item title"))
        if lab is None or lab == "" or (isinstance(lab, float) and lab != lab):
            return self._fail(DataError(f, row, names.get("label", "label"), "missing_label", "empty label"))
        if isinstance(lab, str) and _has_surrogates(lab):
            return self._fail(DataError(f, row, names.get("label", "label"), "bad_encoding", "label is not UTF-8"))
        try:
            level = self.schema.normalize(int(lab) if isinstance(lab, str) and lab.lstrip("-").isdigit() else lab)
        except ValueError:
            return self._fail(DataError(
                f, row, names.get("label", "label"), "unknown_label",
                f"unknown label {lab!r} for schema {self.schema.name!r} (levels {self.schema.level_values}, "
                f"names {[lv.name for lv in self.schema.levels]})"))
        key = hash((normalize_query(q), iid or normalize_query(t)))
        prev = self.seen.get(key)
        if prev is not None:
            prev_row, prev_level = divmod(prev, 16)
            if prev_level != level:
                return self._fail(DataError(
                    f, row, names.get("label", "label"), "conflicting_duplicate",
                    f"the same (query, item) as row {prev_row} with another label ({level} vs {prev_level})"))
            return self._fail(DataError(f, row, None, "duplicate", f"repeats row {prev_row} (same label)"))
        self.seen[key] = row * 16 + level
        self.gate.report.n_kept += 1
        pair_id = f"{qid}:{iid}" if qid and iid else f"{self.source}:{row}"
        return Pair(pair_id=pair_id, index=row - 1, query=q, title=t, attributes=attrs, description=d,
                    level=level, query_id=qid, item_id=iid, brand=brand, category=category, source=self.source)

    def _fail(self, err: DataError) -> None:
        self.gate.fail(err)
        return None


def _column_text(values: Mapping[str, Any], column: str, file: str = "", row: int | None = None) -> str:
    try:
        return as_text(values.get(column), scalars=True)
    except BadValue as e:
        raise DataError(file, row, column, e.reason, str(e)) from None


def read_pairs(
    path: str | os.PathLike[str], columns: ColumnMap | None = None, *, schema: LabelSchema | str | None = None,
    fmt: str | None = None, on_error: OnError = "raise", report: DropReport | None = None,
    source: str | None = None, delimiter: str | None = None,
) -> Iterator[Pair]:
    """Stream labelled pairs from one judgment file with a column mapping.

    Args:
        path: CSV, TSV, JSONL or parquet file (format from the extension unless ``fmt`` is given).
        columns: which column is which (default names: ``query``, ``title``, ``label``).
        schema: label schema of the ``label`` column (levels, label strings, names or aliases accepted).
        on_error: ``raise`` (stop at the first bad row) or ``skip`` (record it in ``report`` and go on).
        report: collects dropped rows and the kept/input counts (pass one to read it afterwards).
        source: ``Pair.source`` and the pair-id prefix when there are no ids (default: the file stem).

    Raises:
        DataError: a missing column (always), or a bad row with ``on_error="raise"``; the message names the
            file, the 1-based row and the field.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "j.tsv")
        >>> _ = open(p, "w").write("q\\tname\\tgrade\\nred sofa\\tRed velvet sofa\\tExact\\n")
        >>> [x.level for x in read_pairs(p, ColumnMap(query="q", title="name", label="grade"), schema="wands")]
        [3]
    """
    cols = columns or ColumnMap()
    schema = get_schema(schema)
    gate = RowGate(on_error, report)
    source = source or Path(path).stem
    val = PairValidator(str(path), schema, gate, source)
    names = {"query": cols.query, "title": cols.title, "label": cols.label, "description": cols.description or ""}
    one_line = [cols.query, cols.title, cols.label, *cols.attribute_columns, *filter(None, (cols.query_id, cols.item_id))]
    for raw in iter_raw_rows(path, fmt, cols.required(), delimiter, single_line=one_line):
        gate.report.n_input += 1
        if raw.error is not None:
            gate.fail(raw.error)
            continue
        v = raw.values
        try:
            attrs = parse_attributes(v.get(cols.attributes)) if cols.attributes else {}
            for c in cols.attribute_columns:
                t = _column_text(v, c, str(path), raw.row)
                if t:
                    attrs[c] = t
        except DataError as e:
            gate.fail(e)
            continue
        except BadValue as e:
            gate.fail(DataError(str(path), raw.row, cols.attributes, e.reason, str(e)))
            continue
        pair = val.make(raw.row, query=v.get(cols.query), title=v.get(cols.title), label=v.get(cols.label),
                        attributes=attrs, description=v.get(cols.description) if cols.description else None,
                        query_id=v.get(cols.query_id) if cols.query_id else None,
                        item_id=v.get(cols.item_id) if cols.item_id else None, names=names)
        if pair is not None:
            yield pair


# ---- presets ------------------------------------------------------------------------------------
ESCI_EXAMPLES = "shopping_queries_dataset_examples.parquet"
ESCI_PRODUCTS = "shopping_queries_dataset_products.parquet"


def read_esci(
    examples: str | os.PathLike[str], products: str | os.PathLike[str] | None = None, *,
    schema: LabelSchema | str | None = "esci", locale: str | None = None, on_error: OnError = "raise",
    report: DropReport | None = None,
) -> Iterator[Pair]:
    """Amazon ESCI: the examples parquet joined with the products parquet on (product_id, product_locale).

    ``examples`` may be the directory holding both files. Labels ``E/S/C/I`` map to 4/3/2/1; attributes are
    brand and colour; the description is the product description, else its bullet points. The product
    table is held in memory (only the columns used); the examples stream. ``locale`` (e.g. ``"us"``) keeps
    one locale; rows of other locales are not read (they are not input).
    """
    ex = Path(examples)
    if ex.is_dir():
        products = products or ex / ESCI_PRODUCTS
        ex = ex / ESCI_EXAMPLES
    if products is None:
        raise ValueError("read_esci: give the products parquet (or a directory holding both files)")
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for p in (ex, Path(products)):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file")
    p_have = pq.ParquetFile(products).schema_arrow.names
    _check_columns(str(products), p_have, ["product_id", "product_title"])
    opt = [c for c in ("product_locale", "product_brand", "product_color", "product_description",
                       "product_bullet_point") if c in p_have]
    prod = pq.read_table(products, columns=["product_id", "product_title", *opt])
    if locale and "product_locale" in opt:
        prod = prod.filter(pc.equal(prod["product_locale"], locale))
    with_locale = "product_locale" in opt
    pid = prod["product_id"].to_pylist()
    ploc = prod["product_locale"].to_pylist() if with_locale else [None] * len(pid)
    index = {(a, b): i for i, (a, b) in enumerate(zip(pid, ploc, strict=True))}
    logger.info("ESCI: %d products indexed", len(index))

    def col(name: str, i: int) -> Any:
        return prod[name][i].as_py() if name in prod.column_names else None

    schema = get_schema(schema)
    gate = RowGate(on_error, report)
    val = PairValidator(str(ex), schema, gate, "esci")
    need = ["query", "query_id", "product_id", "esci_label"]
    e_have = pq.ParquetFile(ex).schema_arrow.names
    _check_columns(str(ex), e_have, need)
    e_cols = need + [c for c in ("product_locale", "example_id") if c in e_have]
    for raw in iter_raw_rows(ex, "parquet", e_cols):
        v = raw.values
        loc = v.get("product_locale")
        if locale and loc is not None and loc != locale:
            continue
        gate.report.n_input += 1
        i = index.get((v["product_id"], loc if with_locale else None))
        if i is None:
            gate.fail(DataError(str(ex), raw.row, "product_id", "unknown_product",
                                f"product {v['product_id']!r} (locale {loc!r}) is not in {products}"))
            continue
        try:
            attrs = {k: as_text(col(c, i), scalars=True) for k, c in (("brand", "product_brand"),
                                                                       ("colour", "product_color"))}
            desc = as_text(col("product_description", i)) or as_text(col("product_bullet_point", i))
        except BadValue as e:
            gate.fail(DataError(str(products), raw.row, None, e.reason, f"product {v['product_id']!r}: {e}"))
            continue
        attrs = {k: x for k, x in attrs.items() if x}
        pair = val.make(raw.row, query=v["query"], title=col("product_title", i), label=v["esci_label"],
                        attributes=attrs, description=desc, query_id=v["query_id"], item_id=v["product_id"],
                        brand=attrs.get("brand", ""),
                        names={"query": "query", "label": "esci_label", "title": "product_title",
                               "description": "product_description"})
        if pair is not None:
            yield pair


def read_wands(
    directory: str | os.PathLike[str], *, schema: LabelSchema | str | None = "wands", on_error: OnError = "raise",
    report: DropReport | None = None,
) -> Iterator[Pair]:
    """Wayfair WANDS: ``query.csv``, ``product.csv`` and ``label.csv`` (tab separated) joined on ids.

    Labels ``Exact/Partial/Irrelevant`` map to 3/2/1. Attributes are the product class and the first
    ``MAX_FEATURES`` ``key:value`` pairs of ``product_features``; the description is ``product_description``.
    Queries and products are held in memory (a few MB); the labels stream. Row numbers refer to ``label.csv``.
    """
    d = Path(directory)
    qfile, pfile, lfile = d / "query.csv", d / "product.csv", d / "label.csv"
    schema = get_schema(schema)
    gate = RowGate(on_error, report)
    queries: dict[str, str] = {}
    for raw in iter_raw_rows(qfile, "tsv", ["query_id", "query"], single_line=["query_id", "query"]):
        if raw.values is not None:
            queries[raw.values["query_id"].strip()] = raw.values["query"]
    products: dict[str, tuple[str, str, str, str]] = {}
    for raw in iter_raw_rows(pfile, "tsv", ["product_id", "product_name"], single_line=["product_id", "product_name"]):
        if raw.values is not None:
            v = raw.values
            products[v["product_id"].strip()] = (v["product_name"], v.get("product_class") or "",
                                                 v.get("product_description") or "", v.get("product_features") or "")
    logger.info("WANDS: %d queries, %d products", len(queries), len(products))
    val = PairValidator(str(lfile), schema, gate, "wands")
    for raw in iter_raw_rows(lfile, "tsv", ["query_id", "product_id", "label"],
                             single_line=["query_id", "product_id", "label"]):
        gate.report.n_input += 1
        if raw.error is not None:
            gate.fail(raw.error)
            continue
        v = raw.values
        qid, pid = v["query_id"].strip(), v["product_id"].strip()
        if qid not in queries:
            gate.fail(DataError(str(lfile), raw.row, "query_id", "unknown_query", f"query {qid!r} not in {qfile}"))
            continue
        if pid not in products:
            gate.fail(DataError(str(lfile), raw.row, "product_id", "unknown_product",
                                f"product {pid!r} not in {pfile}"))
            continue
        name, pclass, desc, feats = products[pid]
        attrs = {"class": pclass.strip()} if pclass.strip() else {}
        try:
            features = parse_attributes(feats)
        except BadValue as e:
            gate.fail(DataError(str(pfile), None, "product_features", e.reason, f"product {pid!r}: {e}"))
            continue
        for k, x in list(features.items())[:MAX_FEATURES]:
            attrs.setdefault(k, x)
        pair = val.make(raw.row, query=queries[qid], title=name, label=v["label"], attributes=attrs,
                        description=desc, query_id=qid, item_id=pid, category=pclass.strip(),
                        names={"query": "query.csv:query", "title": "product.csv:product_name",
                               "description": "product.csv:product_description"})
        if pair is not None:
            yield pair
