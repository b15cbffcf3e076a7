"""Raw judgments -> :class:`~taosr1_verl.data.pairs.Pair`: a generic column-mapped reader for CSV, TSV,
JSONL and parquet, and presets for Amazon ESCI and Wayfair WANDS.

Everything streams (CSV/TSV row by row, parquet in record batches), so memory stays bounded whatever the
file size; only the duplicate check keeps one small int per distinct (query, item) key. Row numbers in
errors are 1-based data rows (the header is not counted; for JSONL, the line number). ``Pair.index`` is
the 0-based data row of the judgment file, so it is unique and stable for a given input.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from taosr1_verl.data.errors import DataError, DropReport, OnError, RowGate
from taosr1_verl.data.pairs import Pair
from taosr1_verl.schema import LabelSchema, get_schema

logger = logging.getLogger(__name__)

csv.field_size_limit(2**31 - 1)  # product descriptions can be long
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
    missing = [c for c in need if c not in have]
    if missing:
        raise DataError(path, None, missing[0], "missing_column",
                        f"missing column(s) {missing}; the file has {have}")


def iter_raw_rows(path: str | os.PathLike[str], fmt: str | None = None, columns: list[str] | None = None,
                  delimiter: str | None = None) -> Iterator[RawRow]:
    """Stream the rows of a CSV/TSV/JSONL/parquet file as dicts, checking ``columns`` exist up front.

    Text is decoded as UTF-8 with undecodable bytes kept as surrogates, so that :class:`PairValidator`
    can name the row and field of broken encoding instead of failing on the whole file.
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    if fmt in ("csv", "tsv"):
        delim = delimiter or ("\t" if fmt == "tsv" else ",")
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            reader = csv.reader(f, delimiter=delim)
            header = next(reader, None)
            if header is None:
                raise DataError(path, None, None, "empty_file", "empty file (no header)")
            header = [h.strip().lstrip("\ufeff") for h in header]
            _check_columns(path, header, columns or [])
            for i, rec in enumerate(reader, 1):
                if len(rec) != len(header) and rec:
                    yield RawRow(i, None, DataError(path, i, None, "bad_row",
                                                    f"{len(rec)} fields, the header has {len(header)}"))
                    continue
                if not rec:
                    yield RawRow(i, None, DataError(path, i, None, "bad_row", "blank line"))
                    continue
                yield RawRow(i, dict(zip(header, rec, strict=True)))
    elif fmt == "jsonl":
        checked = False
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for i, line in enumerate(f, 1):
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield RawRow(i, None, DataError(path, i, None, "bad_json", f"not valid JSON ({e.msg})"))
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

        pf = pq.ParquetFile(path)
        have = pf.schema_arrow.names
        _check_columns(path, have, columns or [])
        i = 0
        for batch in pf.iter_batches(batch_size=8192, columns=list(dict.fromkeys(columns)) if columns else None):
            for rec in batch.to_pylist():
                i += 1
                yield RawRow(i, rec)
    else:
        raise ValueError(f"{path}: unknown format {fmt!r}; expected one of {FORMATS}")


def parse_attributes(value: Any) -> dict[str, str]:
    """Attributes from a JSON object (or its text), or ``key:value`` pairs split by ``|`` or ``;``.

    Example:
        >>> parse_attributes("color:red|material:oak")
        {'color': 'red', 'material': 'oak'}
        >>> parse_attributes('{"size": "L"}')
        {'size': 'L'}
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items() if v is not None and str(v).strip()}
    text = str(value).strip()
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
    out: dict[str, str] = {}
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


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v != v:  # NaN from pandas-written files
        return ""
    return str(v).strip()


class PairValidator:
    """Checks one row's fields and builds the :class:`Pair`, or routes the problem through the gate.

    Checks: broken encoding (any field), empty query, empty title, missing or unknown label, and
    duplicates of a (query, item) key: a repeat with the same label is dropped as ``duplicate``, with
    another label as ``conflicting_duplicate`` (the first occurrence is kept in both cases).
    """

    def __init__(self, file: str, schema: LabelSchema, gate: RowGate, source: str) -> None:
        self.file, self.schema, self.gate, self.source = str(file), schema, gate, source
        self.seen: dict[int, int] = {}  # hash(query, item) -> row * 16 + level

    def make(self, row: int, *, query: Any, title: Any, label: Any, attributes: dict[str, str] | None = None,
             description: Any = None, query_id: Any = None, item_id: Any = None, brand: str = "",
             category: str = "", names: Mapping[str, str] | None = None) -> Pair | None:
        names = names or {}
        f = self.file
        q, t, d = _text(query), _text(title), _text(description)
        attrs = attributes or {}
        if _has_surrogates("".join((q, t, d, *attrs, *attrs.values()))):  # one check on the fast path
            for fname, val in (("query", q), ("title", t), ("description", d), *attrs.items()):
                if _has_surrogates(val) or _has_surrogates(fname):
                    return self._fail(DataError(f, row, names.get(fname, fname), "bad_encoding",
                                                "not valid UTF-8: " + val.encode("utf-8", "backslashreplace")
                                                .decode("ascii", "replace")[:60]))
        if not q:
            return self._fail(DataError(f, row, names.get("query", "query"), "empty_query", "empty query"))
        if not t:
            return self._fail(DataError(f, row, names.get("title", "title"), "empty_title", "empty item title"))
        lab = label.strip() if isinstance(label, str) else label
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
        qid, iid = _text(query_id), _text(item_id)
        key = hash((" ".join(q.casefold().split()), iid or " ".join(t.casefold().split())))
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
    for raw in iter_raw_rows(path, fmt, cols.required(), delimiter):
        gate.report.n_input += 1
        if raw.error is not None:
            gate.fail(raw.error)
            continue
        v = raw.values
        attrs = parse_attributes(v.get(cols.attributes)) if cols.attributes else {}
        for c in cols.attribute_columns:
            t = _text(v.get(c))
            if t:
                attrs[c] = t
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
        attrs = {k: _text(col(c, i)) for k, c in (("brand", "product_brand"), ("colour", "product_color"))}
        attrs = {k: x for k, x in attrs.items() if x}
        desc = _text(col("product_description", i)) or _text(col("product_bullet_point", i))
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
    for raw in iter_raw_rows(qfile, "tsv", ["query_id", "query"]):
        if raw.values is not None:
            queries[raw.values["query_id"].strip()] = raw.values["query"]
    products: dict[str, tuple[str, str, str, str]] = {}
    for raw in iter_raw_rows(pfile, "tsv", ["product_id", "product_name"]):
        if raw.values is not None:
            v = raw.values
            products[v["product_id"].strip()] = (v["product_name"], v.get("product_class") or "",
                                                 v.get("product_description") or "", v.get("product_features") or "")
    logger.info("WANDS: %d queries, %d products", len(queries), len(products))
    val = PairValidator(str(lfile), schema, gate, "wands")
    for raw in iter_raw_rows(lfile, "tsv", ["query_id", "product_id", "label"]):
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
        for k, x in list(parse_attributes(feats).items())[:MAX_FEATURES]:
            attrs.setdefault(k, x)
        pair = val.make(raw.row, query=queries[qid], title=name, label=v["label"], attributes=attrs,
                        description=desc, query_id=qid, item_id=pid, category=pclass.strip(),
                        names={"query": "query.csv:query", "title": "product.csv:product_name",
                               "description": "product.csv:product_description"})
        if pair is not None:
            yield pair
