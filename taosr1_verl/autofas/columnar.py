"""Vectorised feature extraction: the fields of :mod:`.features` computed over whole columns at once.

The per-pair Python of :meth:`FeatureExtractor.transform_reference` is the specification; this module computes
the same arrays (bit for bit, tested on synthetic and hypothesis-generated text) with Arrow compute kernels and
numpy over all items together, as a serving system would:

- **Item side, once per catalog** (:func:`build_items` -> :class:`ItemFeatures`): tokenising titles, categories
  and attribute values, the hashed item bag fields, and the per-item token sets the match features need
  (title words, bigrams, character trigrams, attribute values and keys, category words), each as integer ids
  of one catalog vocabulary.
- **Query side, once per request** (:func:`encode_queries`): a few words in plain Python (the reference helpers),
  looked up in the catalog vocabulary.
- **Cross features, per request** (:func:`assemble`): numpy over the candidate rows: membership of the query's
  tokens in each candidate's sets, counts, ratios, the query x category crosses, prices.

Tokenising: lower-casing with Arrow (``utf8_lower``, with Python's one divergence that can change a token,
U+0130, mapped first), then numpy over the UTF-8 bytes: tokens are runs of ``[a-z0-9]``. A row with a dot
between an alphanumeric and a digit ("2.5m") may hold a decimal token; those rows (rare) go through RE2 with
the tokeniser's own pattern instead. Hashing: CRC32 (the reference's hash) computed over the unique tokens
of a column, vectorised by byte position. No step loops over items in Python; only the input marshalling
(:meth:`ItemColumns.from_pairs`) and the per-query words do.

Example:
    >>> from taosr1_verl.autofas.features import FeatureConfig, FeatureExtractor
    >>> from taosr1_verl.data.pairs import Pair
    >>> p = Pair(pair_id="q:1", index=0, query="red sofa", title="Red velvet sofa", category="sofa")
    >>> ex = FeatureExtractor(FeatureConfig(n_buckets=64)).fit([p])
    >>> items = build_items(ex, ItemColumns.from_pairs([p]))
    >>> out = assemble(ex, items, encode_queries(ex, items, ["red sofa"]), ["text_match"])
    >>> out["text_match"].shape
    (1, 6)
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosr1_verl.autofas import text as txt
from taosr1_verl.data.pairs import Pair

if TYPE_CHECKING:
    from taosr1_verl.autofas.features import FeatureExtractor

_TOKEN_CHARS = np.zeros(256, dtype=bool)
_TOKEN_CHARS[np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)] = True
_DIGITS = np.zeros(256, dtype=bool)
_DIGITS[np.frombuffer(b"0123456789", dtype=np.uint8)] = True
_DOT, _HASH, _S = ord("."), ord("#"), ord("s")
# findall(r"[a-z0-9]+(?:\.[0-9]+)?") as one replace: each token followed by a space, everything else dropped.
_EXACT = r"([a-z0-9]+(?:\.[0-9]+)?)|[^a-z0-9]+"
_SMALL = 64
"""Up to this many strings are CRC'd one by one (:func:`crc32_strings`)."""


def _crc_table() -> np.ndarray:
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(0xEDB88320), t >> 1)
    return t.astype(np.uint32)


_CRC = _crc_table()


# ---- ragged rows ---------------------------------------------------------------------------------------
@dataclass
class Ragged:
    """Variable-length rows: ``values[offsets[i]:offsets[i + 1]]`` is row ``i``."""

    values: np.ndarray
    offsets: np.ndarray

    @property
    def n(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row_ids(self) -> np.ndarray:
        return np.repeat(np.arange(self.n), self.lengths)

    def take(self, rows: np.ndarray) -> Ragged:
        """The rows ``rows`` (in that order), gathered without a Python loop."""
        starts, lens = self.offsets[rows], self.offsets[rows + 1] - self.offsets[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        idx = np.arange(offsets[-1]) + np.repeat(starts - offsets[:-1], lens)
        return Ragged(self.values[idx], offsets)


def _offsets_of(row_ids: np.ndarray, n: int) -> np.ndarray:
    off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_ids, minlength=n), out=off[1:])
    return off


def _positions(offsets: np.ndarray) -> np.ndarray:
    """Position of every element within its row."""
    lens = np.diff(offsets)
    return np.arange(offsets[-1]) - np.repeat(offsets[:-1], lens)


# ---- strings as bytes --------------------------------------------------------------------------------
def _as_large(arr: pa.Array) -> pa.LargeStringArray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    return arr.fill_null("") if arr.null_count else arr


def _sep(s: str) -> pa.Scalar:
    return pa.scalar(s, pa.large_string())


def _bytes_of(arr: pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, data)`` of a large-string array, offsets rebased to index ``data``."""
    _, obuf, dbuf = arr.buffers()
    off = np.frombuffer(obuf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(dbuf, dtype=np.uint8) if dbuf is not None else np.zeros(0, np.uint8)
    return off - off[0], data[off[0] : off[-1]]


def _from_spans(data: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> pa.LargeStringArray:
    """A string array of the byte spans ``data[starts[i]:starts[i] + lens[i]]``."""
    off = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lens, out=off[1:])
    idx = np.arange(off[-1]) + np.repeat(starts - off[:-1], lens)
    return pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(off), pa.py_buffer(data[idx].tobytes()))


def lower(arr: pa.Array) -> pa.LargeStringArray:
    """``str.lower`` as far as tokens can tell: Python maps U+0130 to "i" + U+0307, utf8proc to "i"."""
    return pc.utf8_lower(pc.replace_substring(_as_large(arr), "\u0130", "i\u0307"))


@dataclass
class Tokens:
    """The words of each row of a string column (``features.words``), as byte spans of a lowered buffer."""

    data: np.ndarray
    starts: np.ndarray
    lens: np.ndarray
    offsets: np.ndarray
    """Row ``i``'s tokens are ``offsets[i]:offsets[i + 1]``."""

    def strings(self, stem: bool = False) -> pa.LargeStringArray:
        """The tokens (stemmed with :func:`.text.stem` when ``stem``) as one flat string array."""
        return _from_spans(self.data, self.starts, self._stem_lens() if stem else self.lens)

    def _stem_lens(self) -> np.ndarray:
        # _stem: drop a final "s" of a word longer than 3 unless it ends in "ss".
        end = self.starts + self.lens
        last = self.data[np.maximum(end - 1, 0)] if len(self.data) else np.zeros(len(end), np.uint8)
        prev = self.data[np.maximum(end - 2, 0)] if len(self.data) else np.zeros(len(end), np.uint8)
        cut = (self.lens > 3) & (last == _S) & (prev != _S)
        return self.lens - cut

    def row_ids(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))


def tokenize(arr: pa.Array) -> Tokens:
    """``features.words`` of every row of ``arr``, vectorised (see the module docstring)."""
    low = lower(arr)
    n = len(low)
    off, data = _bytes_of(low)
    byte_row = np.repeat(np.arange(n), np.diff(off))
    tok = _TOKEN_CHARS[data]
    same = byte_row[:-2] == byte_row[2:] if len(data) > 2 else np.zeros(0, bool)
    decimal = (data[1:-1] == _DOT) & tok[:-2] & _DIGITS[data[2:]] & same if len(data) > 2 else same
    if decimal.any():
        exact = np.zeros(n, dtype=bool)
        exact[byte_row[1:-1][decimal]] = True
        mask = pa.array(exact)
        fixed = pc.replace_substring_regex(low.filter(mask), pattern=_EXACT, replacement="\\1 ")
        low = pc.replace_with_mask(low, mask, fixed.cast(pa.large_string()))
        off, data = _bytes_of(low)
        byte_row = np.repeat(np.arange(n), np.diff(off))
        # In the rewritten rows tokens are separated by spaces and may hold their decimal dot.
        tok = _TOKEN_CHARS[data] | ((data == _DOT) & exact[byte_row])
    # A token starts where a token byte follows a non-token byte or a row boundary.
    first = np.zeros(len(data), dtype=bool)
    first[off[:-1][np.diff(off) > 0]] = True
    prev_tok = np.empty(len(data), dtype=bool)
    if len(data):
        prev_tok[0] = False
        prev_tok[1:] = tok[:-1]
    starts = np.flatnonzero(tok & (~prev_tok | first))
    last = np.zeros(len(data), dtype=bool)
    last[off[1:][np.diff(off) > 0] - 1] = True
    next_tok = np.empty(len(data), dtype=bool)
    if len(data):
        next_tok[-1] = False
        next_tok[:-1] = tok[1:]
    ends = np.flatnonzero(tok & (~next_tok | last)) + 1
    rows = byte_row[starts] if len(starts) else np.zeros(0, np.int64)
    return Tokens(data, starts, ends - starts, _offsets_of(rows, n))


# ---- hashing -----------------------------------------------------------------------------------------
def crc32_strings(arr: pa.Array, prefix: bytes = b"") -> np.ndarray:
    """``zlib.crc32(prefix + s)`` of every string of ``arr`` (uint32), vectorised by byte position."""
    arr = _as_large(arr)
    if len(arr) <= _SMALL:
        # A handful of strings (a request's crosses): zlib per string beats a numpy pass per byte position.
        return np.array([zlib.crc32(prefix + s.encode()) for s in arr.to_pylist()], dtype=np.uint32)
    off, data = _bytes_of(arr)
    lens = np.diff(off)
    order = np.argsort(-lens, kind="stable")
    starts, slens = off[:-1][order], lens[order]
    crc = np.full(len(arr), zlib.crc32(prefix) ^ 0xFFFFFFFF, dtype=np.uint32)
    # Longest first: at byte j the strings still running are a prefix of the order.
    alive = np.searchsorted(-slens, -np.arange(1, int(slens[0]) + 1), side="right") if len(slens) else []
    for j, k in enumerate(alive):
        c = crc[:k]
        crc[:k] = _CRC[(c ^ data[starts[:k] + j]) & 0xFF] ^ (c >> 8)
    out = np.empty_like(crc)
    out[order] = crc ^ 0xFFFFFFFF
    return out


def hash_ids(arr: pa.Array, salt: str, n_buckets: int) -> np.ndarray:
    """``features._hash`` of every string (int64 bucket ids in ``[1, n_buckets)``), each unique string once."""
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    enc = pc.dictionary_encode(_as_large(arr))
    ids = crc32_strings(enc.dictionary, f"{salt}\x1f".encode()).astype(np.int64) % (n_buckets - 1) + 1
    return ids[enc.indices.to_numpy(zero_copy_only=False)]


def _bag(ids: np.ndarray, rows: np.ndarray, pos: np.ndarray, n: int, length: int) -> np.ndarray:
    """Bag matrix ``[n, length]``: ``ids`` at ``(rows, pos)`` where ``pos < length``, 0 elsewhere."""
    out = np.zeros((n, length), dtype=np.int64)
    keep = pos < length
    out[rows[keep], pos[keep]] = ids[keep]
    return out


class _Vocab:
    """Exact integer ids of strings (Arrow dictionary encoding); queries look words up in :attr:`index`."""

    def __init__(self, arr: pa.Array) -> None:
        enc = pc.dictionary_encode(_as_large(arr))
        self.ids = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        self.index = {s: i for i, s in enumerate(enc.dictionary.to_pylist())}

    def get(self, token: str) -> int:
        return self.index.get(token, -1)


def _unique_rows(ids: np.ndarray, rows: np.ndarray, n: int) -> Ragged:
    """Per-row sets: duplicates within a row removed, rows in order."""
    if len(ids) == 0:
        return Ragged(np.zeros(0, np.int64), np.zeros(n + 1, np.int64))
    span = int(ids.max()) + 1
    keys = np.sort(rows.astype(np.int64) * span + ids)
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    return Ragged(keys % span, _offsets_of(keys // span, n))


def _bigrams(tok: Tokens, strings: pa.LargeStringArray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """``a_b`` of consecutive tokens of the same row: ``(strings, rows, index within the row)``."""
    rows = tok.row_ids()
    if len(rows) < 2:
        return pa.array([], pa.large_string()), np.zeros(0, np.int64), np.zeros(0, np.int64)
    same = rows[:-1] == rows[1:]
    joined = pc.binary_join_element_wise(strings[:-1], strings[1:], _sep("_")).filter(pa.array(same))
    first = np.flatnonzero(same)
    return joined, rows[first], first - tok.offsets[rows[first]]


def _chargrams(tok: Tokens, stem: bool) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """:func:`.text.chargrams`: trigrams of ``#word#``, word by word: ``(strings, rows, index within the row)``."""
    lens = tok._stem_lens() if stem else tok.lens
    rows = tok.row_ids()
    padded = lens + 2
    poff = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(padded, out=poff[1:])
    buf = np.full(int(poff[-1]), _HASH, dtype=np.uint8)
    inner = np.arange(int(lens.sum())) + np.repeat(poff[:-1] + 1 - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    src = np.arange(int(lens.sum())) + np.repeat(tok.starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    buf[inner] = tok.data[src]
    # Word w has len(w) trigrams, starting at each of its padded positions but the last two.
    gstart = np.arange(int(lens.sum())) + np.repeat(poff[:-1] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    grams = buf[gstart[:, None] + np.arange(3)].reshape(-1)
    strings = pa.LargeStringArray.from_buffers(len(gstart), pa.py_buffer(np.arange(len(gstart) + 1, dtype=np.int64) * 3),
                                               pa.py_buffer(grams.tobytes()))
    grow = np.repeat(rows, lens)
    goff = _offsets_of(grow, len(tok.offsets) - 1)
    return strings, grow, np.arange(len(grow)) - goff[grow]


# ---- items -------------------------------------------------------------------------------------------
@dataclass
class ItemColumns:
    """The raw item side of a catalog as columns: one row per item, attributes flattened in dict order."""

    titles: pa.Array
    categories: pa.Array
    prices: np.ndarray
    """float64, NaN where unknown."""
    attr_item: np.ndarray
    """Item row of each attribute."""
    attr_keys: pa.Array
    attr_values: pa.Array

    @property
    def n(self) -> int:
        return len(self.titles)

    @classmethod
    def from_pairs(cls, pairs: Sequence[Pair]) -> ItemColumns:
        """Marshal the items of ``pairs`` (one row per pair) into columns."""
        attrs = [(i, str(k), str(v)) for i, p in enumerate(pairs) for k, v in p.attributes.items()]
        return cls(
            titles=pa.array([p.title for p in pairs], pa.large_string()),
            categories=pa.array([p.category for p in pairs], pa.large_string()),
            prices=np.array([np.nan if p.price is None else p.price for p in pairs], dtype=np.float64),
            attr_item=np.array([a[0] for a in attrs], dtype=np.int64),
            attr_keys=pa.array([a[1] for a in attrs], pa.large_string()),
            attr_values=pa.array([a[2] for a in attrs], pa.large_string()),
        )


SET_VOCAB: dict[str, str] = {"ts": "words", "vals": "words", "cw": "words", "tb": "bigrams", "tc": "chargrams",
                             "keys": "keys"}
"""Per-item token sets and the vocabulary their ids come from: title words, attribute values, category words
(stemmed), title bigrams and character trigrams (stemmed), attribute keys (lower-cased)."""
_NEEDS: dict[str, tuple[str, ...]] = {
    "text_match": ("ts", "tb", "tc", "phrase"), "attr_match": ("ts", "vals", "keys"),
    "category_match": ("ts", "cw"), "price": ("price",), "query_x_category": ("category",)}
ITEM_BAGS = ("title_ngrams", "title_chargrams", "attr_tokens", "category_id")


def needs(fields: Sequence[str]) -> set[str]:
    """The precomputed item parts ``fields`` read: bag names, set names, ``phrase``, ``price``, ``category``."""
    out: set[str] = set()
    for f in fields:
        out.update(_NEEDS.get(f, (f,) if f in ITEM_BAGS else ()))
    return out


@dataclass
class ItemFeatures:
    """Everything item-side, precomputed once per catalog (see the module docstring). A request gathers its
    candidates with :meth:`take`, only the parts its fields read."""

    n: int
    bags: dict[str, np.ndarray]
    """Hashed item bag fields ``[n, size]`` (those of :data:`ITEM_BAGS` that were built)."""
    sets: dict[str, Ragged]
    """Per-item token sets by :data:`SET_VOCAB` name, duplicates removed."""
    vocabs: dict[str, _Vocab]
    phrase: pa.LargeStringArray | None
    """``" ".join`` of the stemmed title words."""
    category: np.ndarray
    """Row -> index into :attr:`category_tokens`."""
    category_tokens: pa.LargeStringArray
    """``"_".join(words(category)) or "<none>"``, each once."""
    category_crc: np.ndarray
    """Per category token, the CRC register its bytes leave from zero (for the query x category crosses)."""
    category_lengths: np.ndarray
    """Per category token, its length in bytes."""
    log_price: np.ndarray
    price: np.ndarray
    """float64, NaN where unknown, negative or not finite."""

    def take(self, rows: np.ndarray, fields: Sequence[str] | None = None) -> ItemFeatures:
        """The candidates ``rows`` of the catalog, with the parts ``fields`` read (all by default)."""
        rows = np.asarray(rows, dtype=np.int64)
        need = needs(fields) if fields is not None else set(self.bags) | set(self.sets) | {"phrase", "price"}
        return ItemFeatures(
            n=len(rows), bags={k: v[rows] for k, v in self.bags.items() if k in need},
            sets={k: v.take(rows) for k, v in self.sets.items() if k in need}, vocabs=self.vocabs,
            phrase=self.phrase.take(pa.array(rows)) if "phrase" in need and self.phrase is not None else None,
            category=self.category[rows], category_tokens=self.category_tokens, category_crc=self.category_crc,
            category_lengths=self.category_lengths,
            log_price=self.log_price[rows] if "price" in need else self.log_price[:0],
            price=self.price[rows] if "price" in need else self.price[:0])


def build_items(ex: FeatureExtractor, cols: ItemColumns, fields: Sequence[str] | None = None) -> ItemFeatures:
    """Precompute the item side of ``cols`` (for every field, or for ``fields``)."""
    cfg, n = ex.config, cols.n
    need = needs(fields if fields is not None else [s.name for s in ex.specs])
    bags: dict[str, np.ndarray] = {}

    title = tokenize(cols.titles)
    t_rows = title.row_ids()
    t_str = title.strings()
    if "title_ngrams" in need:
        bi, bi_rows, bi_pos = _bigrams(title, t_str)
        ids = hash_ids(pa.concat_arrays([t_str, bi]), "title_ngrams", cfg.n_buckets)
        n_uni = np.diff(title.offsets)
        bags["title_ngrams"] = _bag(ids, np.concatenate([t_rows, bi_rows]),
                                    np.concatenate([_positions(title.offsets), n_uni[bi_rows] + bi_pos]), n,
                                    cfg.max_title_ngrams)
    if "title_chargrams" in need:
        cg, cg_rows, cg_pos = _chargrams(title, stem=False)
        bags["title_chargrams"] = _bag(hash_ids(cg, "title_chargrams", cfg.n_buckets), cg_rows, cg_pos, n,
                                       cfg.max_title_chargrams)

    cat = tokenize(cols.categories)
    cat_tok = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(cat.offsets), cat.strings()), _sep("_"))
    cat_tok = pc.if_else(pc.equal(pc.binary_length(cat_tok), 0), _sep("<none>"), cat_tok)
    cat_enc = pc.dictionary_encode(cat_tok)
    if "category_id" in need:
        bags["category_id"] = hash_ids(cat_tok, "category_id", cfg.n_buckets)[:, None]

    values = tokenize(cols.attr_values)
    # Keys are lower-cased by Python (the reference's str.lower), once per distinct key.
    kenc = pc.dictionary_encode(_as_large(cols.attr_keys))
    keys_low = pa.array([k.lower() for k in kenc.dictionary.to_pylist()], pa.large_string()).take(kenc.indices)
    if "attr_tokens" in need:
        # Per attribute: "key=v_a_l_u_e", then the value's words.
        joined = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(values.offsets), values.strings()), _sep("_"))
        kv = pc.binary_join_element_wise(keys_low, joined, _sep("="))
        per_attr = 1 + np.diff(values.offsets)
        # Start of each attribute's tokens within its item (attributes come item by item, in dict order).
        before = np.concatenate([[0], np.cumsum(per_attr)])[:-1]
        a_start = before - before[_offsets_of(cols.attr_item, n)[cols.attr_item]]
        v_attr = values.row_ids()
        v_pos = a_start[v_attr] + 1 + _positions(values.offsets)
        ids = hash_ids(pa.concat_arrays([kv, values.strings()]), "attr_tokens", cfg.n_buckets)
        bags["attr_tokens"] = _bag(ids, np.concatenate([cols.attr_item, cols.attr_item[v_attr]]),
                                   np.concatenate([a_start, v_pos]), n, cfg.max_attr_tokens)

    price = np.where(np.isfinite(cols.prices) & (cols.prices >= 0), cols.prices, np.nan)
    sets: dict[str, Ragged] = {}
    vocabs: dict[str, _Vocab] = {}
    if need & {"ts", "vals", "cw"}:
        # One vocabulary for the stemmed words of titles, values and categories: a query word has one id.
        t_stem, v_stem, c_stem = title.strings(stem=True), values.strings(stem=True), cat.strings(stem=True)
        vocabs["words"] = words = _Vocab(pa.concat_arrays([t_stem, v_stem, c_stem]))
        nt, nv = len(t_stem), len(v_stem)
        sets["ts"] = _unique_rows(words.ids[:nt], t_rows, n)
        sets["vals"] = _unique_rows(words.ids[nt : nt + nv], cols.attr_item[values.row_ids()], n)
        sets["cw"] = _unique_rows(words.ids[nt + nv :], cat.row_ids(), n)
    if "tb" in need:
        sbi, sbi_rows, _ = _bigrams(title, title.strings(stem=True))
        vocabs["bigrams"] = _Vocab(sbi)
        sets["tb"] = _unique_rows(vocabs["bigrams"].ids, sbi_rows, n)
    if "tc" in need:
        scg, scg_rows, _ = _chargrams(title, stem=True)
        vocabs["chargrams"] = _Vocab(scg)
        sets["tc"] = _unique_rows(vocabs["chargrams"].ids, scg_rows, n)
    if "keys" in need:
        vocabs["keys"] = _Vocab(keys_low)
        sets["keys"] = _unique_rows(vocabs["keys"].ids, cols.attr_item, n)
    phrase = None
    if "phrase" in need:
        phrase = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(title.offsets), title.strings(stem=True)),
                                _sep(" "))
    return ItemFeatures(
        n=n, bags=bags, sets=sets, vocabs=vocabs, phrase=phrase,
        category=cat_enc.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        category_tokens=cat_enc.dictionary.cast(pa.large_string()),
        category_crc=np.array([zlib.crc32(c.encode(), 0xFFFFFFFF) ^ 0xFFFFFFFF
                               for c in cat_enc.dictionary.to_pylist()], dtype=np.uint32),
        category_lengths=pc.binary_length(cat_enc.dictionary).to_numpy().astype(np.int64),
        log_price=np.log1p(np.nan_to_num(price, nan=0.0)), price=price)


# ---- queries -----------------------------------------------------------------------------------------
@dataclass
class QueryFeatures:
    """The query side of a request (or of each distinct query of a batch), encoded against one catalog."""

    n: int
    ngrams: np.ndarray | None
    """Hashed ``query_ngrams`` bag ``[n, size]``."""
    stems: list[list[str]]
    """Stemmed query words in order (for the query x category crosses)."""
    ids: dict[str, np.ndarray]
    """Per vocabulary, ``[n, J]`` ids (-1: padding or not in the catalog) of each query's distinct tokens:
    ``words`` (stemmed words), ``bigrams``, ``chargrams``, ``keys`` (the keys of which each wanted word is a
    value, owned by word ``key_owner``)."""
    sizes: dict[str, np.ndarray]
    """Distinct tokens per query, by vocabulary (``words``, ``bigrams``, ``chargrams``, ``positive``)."""
    positive: np.ndarray
    """``[n, J]`` over ``ids["words"]``: the word is wanted (not negated, not a negation word)."""
    negated: np.ndarray
    catword: np.ndarray
    """``[n, J]``: a wanted word that names some category."""
    has_negation: np.ndarray
    key_owner: np.ndarray
    phrase: np.ndarray
    limit: np.ndarray
    """float64, NaN without a price limit."""


_NO_VOCAB = _Vocab(pa.array([], pa.large_string()))


@functools.lru_cache(maxsize=8)
def _category_words(categories: tuple[str, ...]) -> frozenset[str]:
    return frozenset(w for c in categories for w in c.split())


def _pad(rows: list[list[int]], fill: int = -1, dtype: type = np.int64) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), max(width, 1)), fill, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def encode_queries(ex: FeatureExtractor, items: ItemFeatures, queries: Sequence[str],
                   fields: Sequence[str] | None = None) -> QueryFeatures:
    """The query side, once per distinct query: a few words each, in Python with the reference helpers."""
    want = set(fields) if fields is not None else {s.name for s in ex.specs}
    spec = ex.spec_by_name["query_ngrams"]
    cat_words = _category_words(tuple(ex.categories))
    vw, vb, vc, vk = (items.vocabs.get(k, _NO_VOCAB) for k in ("words", "bigrams", "chargrams", "keys"))
    rows: dict[str, list] = {k: [] for k in ("ngrams", "words", "pos", "neg", "cat", "bigrams", "chargrams", "keys",
                                             "owner", "phrase", "limit", "has_neg")}
    stems = []
    for q in queries:
        raw = txt.words(q)
        if "query_ngrams" in want:
            rows["ngrams"].append(txt.bag(txt.ngrams(raw), spec.name, ex.config.n_buckets, spec.size))
        qw = [txt.stem(w) for w in raw]
        stems.append(qw)
        qs = list(dict.fromkeys(qw))
        neg_at = next((i for i, w in enumerate(qw) if w in txt.NEGATIONS), None)
        negated = set(qw[neg_at + 1 : neg_at + 3]) if neg_at is not None else set()
        positive = set(qs) - negated - set(txt.NEGATIONS)
        rows["words"].append([vw.get(w) for w in qs])
        rows["pos"].append([w in positive for w in qs])
        rows["neg"].append([w in negated for w in qs])
        rows["cat"].append([w in positive and w in cat_words for w in qs])
        rows["has_neg"].append(bool(negated))
        if "text_match" in want:
            rows["bigrams"].append([vb.get(f"{a}_{b}") for a, b in dict.fromkeys(zip(qw, qw[1:], strict=False))])
            rows["chargrams"].append([vc.get(c) for c in dict.fromkeys(txt.chargrams(qw))])
        owned = [(vk.get(k), j) for j, w in enumerate(qs) if w in positive for k in ex.value_keys.get(w, ())]
        rows["keys"].append([k for k, _ in owned])
        rows["owner"].append([j for _, j in owned])
        rows["phrase"].append(" ".join(qw))
        lim = txt.price_limit(q)
        rows["limit"].append(np.nan if lim is None else lim)
    n = len(queries)
    return QueryFeatures(
        n=n, ngrams=np.asarray(rows["ngrams"], dtype=np.int64).reshape(n, spec.size) if rows["ngrams"] else None,
        stems=stems,
        ids={"words": _pad(rows["words"]), "bigrams": _pad(rows["bigrams"] or [[]] * n),
             "chargrams": _pad(rows["chargrams"] or [[]] * n), "keys": _pad(rows["keys"])},
        sizes={"words": np.array([len(r) for r in rows["words"]], dtype=np.int64),
               "bigrams": np.array([len(r) for r in rows["bigrams"]] or [0] * n, dtype=np.int64),
               "chargrams": np.array([len(r) for r in rows["chargrams"]] or [0] * n, dtype=np.int64),
               "positive": np.array([sum(r) for r in rows["pos"]], dtype=np.int64)},
        positive=_pad(rows["pos"], False, bool), negated=_pad(rows["neg"], False, bool),
        catword=_pad(rows["cat"], False, bool), has_negation=np.array(rows["has_neg"], dtype=bool),
        key_owner=_pad(rows["owner"], 0), phrase=np.asarray(rows["phrase"], dtype=np.dtypes.StringDType()),
        limit=np.asarray(rows["limit"], dtype=np.float64))


# ---- cross features ----------------------------------------------------------------------------------
def _member(sets: Ragged, query_ids: np.ndarray, qidx: np.ndarray | None, vocab_size: int) -> np.ndarray:
    """``[rows, J]``: whether token ``j`` of each row's query is in the row's set."""
    n, width = sets.n, query_ids.shape[1]
    out = np.zeros((n, width), dtype=bool)
    if len(sets.values) == 0:
        return out
    rows = sets.row_ids()
    if qidx is None:
        # One query: a lookup table over the vocabulary (id -> query position), one gather per token.
        table = np.full(vocab_size + 1, -1, dtype=np.int32)
        q = query_ids[0]
        ok = q >= 0
        table[q[ok]] = np.flatnonzero(ok)
        j = table[sets.values]
        hit = j >= 0
        out[rows[hit], j[hit]] = True
        return out
    q = query_ids[qidx[rows]]
    t, j = np.nonzero((sets.values[:, None] == q) & (q >= 0))
    out[rows[t], j] = True
    return out


def assemble(ex: FeatureExtractor, items: ItemFeatures, queries: QueryFeatures, fields: Sequence[str] | None = None,
             qidx: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The fields (standardised dense, hashed bags) for each item row of ``items`` with its query: query
    ``qidx[row]`` of ``queries``, or the one query of a request (``qidx=None``)."""
    n = items.n
    want = list(fields) if fields is not None else [s.name for s in ex.specs]
    spec = ex.spec_by_name
    unknown = [f for f in want if f not in spec]
    if unknown:
        raise ValueError(f"unknown feature fields {sorted(unknown)}; known: {[s.name for s in ex.specs]}")
    if qidx is None and queries.n != 1:
        raise ValueError(f"assemble: {queries.n} queries need qidx (the query of each row)")
    missing = sorted(p for p in needs(want) - {"category"}
                     if p not in items.bags and p not in items.sets and not (p == "phrase" and items.phrase is not None)
                     and not (p == "price" and len(items.price) == n))
    if missing:
        raise ValueError(f"fields {want} need item parts {missing} that were not precomputed "
                         "(build the catalog with these fields)")
    cache: dict[str, np.ndarray] = {}

    def member(name: str) -> np.ndarray:
        if name not in cache:
            vocab = SET_VOCAB[name]
            cache[name] = _member(items.sets[name], queries.ids[vocab], qidx, len(items.vocabs[vocab].index))
        return cache[name]

    def q(a: np.ndarray) -> np.ndarray:
        # A query-side array per row: broadcast for one query, gathered for a batch.
        return a[:1] if qidx is None else a[qidx]

    out: dict[str, np.ndarray] = {}
    for f in want:
        if f == "query_ngrams":
            out[f] = np.repeat(queries.ngrams, n, axis=0) if qidx is None else queries.ngrams[qidx]
        elif f in ITEM_BAGS:
            out[f] = items.bags[f]
        elif f == "query_x_category":
            out[f] = _query_x_category(items, queries, qidx, ex.config.n_buckets, spec[f].size)
        else:
            raw = _dense(f, items, queries, q, member, qidx)
            mean = np.asarray(ex.dense_mean.get(f, 0.0), dtype=np.float32)
            std = np.asarray(ex.dense_std.get(f, 1.0), dtype=np.float32)
            out[f] = ((raw - mean) / std).astype(np.float32)
    return {s.name: out[s.name] for s in ex.specs if s.name in out}


def _dense(f: str, items: ItemFeatures, queries: QueryFeatures, q: Callable[[np.ndarray], np.ndarray],
           member: Callable[[str], np.ndarray], qidx: np.ndarray | None) -> np.ndarray:
    """The raw (unstandardised) columns of dense field ``f``, as :meth:`FeatureExtractor._dense` defines them."""
    n = items.n
    pos = np.broadcast_to(q(queries.positive), (n, queries.positive.shape[1]))
    size = queries.sizes
    if f == "text_match":
        ts = member("ts")
        n_ts = items.sets["ts"].lengths
        inter = ts.sum(1)
        union = q(size["words"]) + n_ts - inter
        tc = member("tc").sum(1)
        cunion = q(size["chargrams"]) + items.sets["tc"].lengths - tc
        if qidx is None:
            found = pc.match_substring(items.phrase, str(queries.phrase[0])).to_numpy(zero_copy_only=False)
        else:
            # Several queries (a training batch): each row's own pattern, element-wise.
            phrases = np.asarray(items.phrase.to_numpy(zero_copy_only=False), dtype=np.dtypes.StringDType())
            found = np.strings.find(phrases, queries.phrase[qidx]) >= 0
        contained = found & (q(size["words"]) > 0)
        cols = [
            (ts & pos).sum(1) / np.maximum(q(size["positive"]), 1),
            inter / np.maximum(n_ts, 1),
            np.where(union > 0, inter / np.maximum(union, 1), 0.0),
            member("tb").sum(1) / np.maximum(q(size["bigrams"]), 1),
            np.where(cunion > 0, tc / np.maximum(cunion, 1), 0.0),
            contained,
        ]
    elif f == "attr_match":
        ts, vals = member("ts"), member("vals")
        # A wanted word "owns" the keys it is a value of; it conflicts when the item has one of those keys
        # and neither that word among its values nor in its title.
        owned = _member(items.sets["keys"], queries.ids["keys"], qidx, len(items.vocabs["keys"].index))
        key_hit = np.zeros(pos.shape, dtype=bool)
        r, k = np.nonzero(owned)
        key_hit[r, queries.key_owner[0, k] if qidx is None else queries.key_owner[qidx[r], k]] = True
        neg = q(queries.negated)
        cols = [(pos & vals).sum(1), (pos & ~vals & ~ts & key_hit).sum(1), (neg & (vals | ts)).sum(1),
                np.broadcast_to(q(queries.has_negation), (n,))]
    elif f == "category_match":
        ts, cw = member("ts"), member("cw")
        cols = [(pos & cw).any(1), (q(queries.catword) & ~cw & ~ts).any(1)]
    else:  # price
        limit = np.broadcast_to(q(queries.limit), (n,))
        price = items.price
        both = ~np.isnan(price) & ~np.isnan(limit)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.clip(np.log((price + 1.0) / (limit + 1.0)), -3.0, 3.0)
        cols = [items.log_price, ~np.isnan(limit), both & (price <= limit), np.where(both, ratio, 0.0)]
    return np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1).astype(np.float32)


def _query_x_category(items: ItemFeatures, queries: QueryFeatures, qidx: np.ndarray | None, n_buckets: int,
                      size: int) -> np.ndarray:
    """``f"{stem(w)}|{category}"`` for the first ``size`` query words, hashed once per (query, category).

    CRC32 is affine over GF(2): continuing a CRC register ``r`` over the bytes of a category ``c`` gives
    ``L^len(c) r ^ g(c)``, with ``g(c)`` the register ``c`` leaves from zero (precomputed per category) and
    ``L^n`` a 32x32 bit matrix (zlib's ``crc32_combine``). So each query word's register (after
    ``salt\x1f{word}|``, per request) meets every candidate category in a few numpy ops."""
    qrow = np.zeros(items.n, np.int64) if qidx is None else qidx
    n_cat = max(len(items.category_tokens), 1)
    combo, inv = np.unique(qrow * n_cat + items.category, return_inverse=True)
    cq, cc = combo // n_cat, combo % n_cat
    prefix = b"query_x_category\x1f"
    regs = _pad([[zlib.crc32(prefix + w.encode() + b"|") ^ 0xFFFFFFFF for w in st[:size]] for st in queries.stems],
                0).astype(np.uint32)
    lens = np.array([min(len(st), size) for st in queries.stems], dtype=np.int64)
    reg = regs[cq]
    out = np.zeros(reg.shape, dtype=np.uint32)
    clen = items.category_lengths[cc]
    for n in np.unique(clen):
        sel = clen == n
        out[sel] = _gf2_apply(_crc_shift(int(n)), reg[sel]) ^ items.category_crc[cc[sel]][:, None]
    ids = (out ^ np.uint32(0xFFFFFFFF)).astype(np.int64) % (n_buckets - 1) + 1
    ids[np.arange(ids.shape[1])[None, :] >= lens[cq][:, None]] = 0
    table = np.zeros((len(combo), size), dtype=np.int64)
    table[:, : ids.shape[1]] = ids[:, :size]
    return table[inv.reshape(-1)]


@functools.lru_cache(maxsize=256)
def _crc_shift(n: int) -> np.ndarray:
    """Columns of ``L^n``: where each single-bit CRC register lands after ``n`` zero bytes."""
    r = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
    for _ in range(n):
        r = _CRC[r & 0xFF] ^ (r >> 8)
    return r


def _gf2_apply(cols: np.ndarray, regs: np.ndarray) -> np.ndarray:
    """``L regs`` for every register: the XOR of the columns of ``L`` whose bit is set."""
    bits = (regs[..., None] >> np.arange(32, dtype=np.uint32)) & 1
    return np.bitwise_xor.reduce(np.where(bits.astype(bool), cols, np.uint32(0)), axis=-1)


def request(ex: FeatureExtractor, query: str, items: ItemFeatures, rows: np.ndarray | None = None,
            fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Features of one request: ``query`` against the candidates ``rows`` of a precomputed catalog (all rows
    when ``None``). Only the query side and the cross features are computed here."""
    cand = items if rows is None else items.take(rows, fields)
    return assemble(ex, cand, encode_queries(ex, items, [query], fields), fields)


def transform(ex: FeatureExtractor, pairs: Sequence[Pair], fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """:meth:`FeatureExtractor.transform` over a batch of pairs: items as a catalog, distinct queries once."""
    items = build_items(ex, ItemColumns.from_pairs(pairs), fields)
    index: dict[str, int] = {}
    qidx = np.array([index.setdefault(p.query, len(index)) for p in pairs], dtype=np.int64)
    return assemble(ex, items, encode_queries(ex, items, list(index), fields), fields, qidx=qidx)


__all__ = ["ITEM_BAGS", "SET_VOCAB", "ItemColumns", "ItemFeatures", "QueryFeatures", "Ragged", "Tokens", "assemble",
           "build_items", "crc32_strings", "encode_queries", "hash_ids", "lower", "needs", "request", "tokenize",
           "transform"]
