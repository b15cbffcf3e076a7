"""Split by query: all pairs of one query land in one split, decided by a seeded hash of the query text.

No state and no second pass: a query's split depends only on (seed, normalised query text), so it is
stable across runs, machines and file orders, and streaming 1M rows needs no memory for it. Shares are
met in expectation (exactly enough for thousands of queries; small sets vary). Normalised = Unicode NFC,
case-folded, whitespace collapsed: NFC and NFD spellings of one query land in the same split.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping

from taosr1_verl.config_types import parse_shares
from taosr1_verl.data.pairs import Pair
from taosr1_verl.errors import UserError

_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

DEFAULT_SPLITS: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}


def parse_splits(text: str) -> dict[str, float]:
    """``"train=0.8,val=0.1,test=0.1"`` or ``"0.8/0.1/0.1"`` (train/val/test) -> normalised shares.

    Example:
        >>> parse_splits("90/0/10")
        {'train': 0.9, 'val': 0.0, 'test': 0.1}
    """
    shares = parse_shares(text, ("train", "val", "test"), key=str, pair_sep="=", what="splits",
                          expected="'train=0.8,val=0.1,test=0.1' or '0.8/0.1/0.1'")
    check_split_names(shares)
    return shares


def check_split_names(names: Iterable[str]) -> None:
    """Split names become file names (``pairs_<name>.parquet``): letters, digits, ``_`` and ``-`` only."""
    for name in names:
        if not isinstance(name, str) or not _SPLIT_NAME.fullmatch(name):
            raise UserError(f"split name {name!r}: use 1-64 letters, digits, '_' or '-' (it becomes a file name)")


def normalize_query(query: str) -> str:
    """Grouping form of a query: NFC, case-folded, whitespace collapsed ("Red  Sofa" == "red sofa", and
    "café" spelled with a combining accent == "café" with a precomposed one)."""
    if not query.isascii():
        query = unicodedata.normalize("NFC", unicodedata.normalize("NFD", query).casefold())
        return " ".join(query.split())
    return " ".join(query.casefold().split())


class QuerySplitter:
    """``splitter(query) -> split name``, seeded; the same query text always gets the same split.

    Example:
        >>> s = QuerySplitter(seed=0)
        >>> s("Red Sofa") == s("red  sofa")
        True
    """

    def __init__(self, splits: Mapping[str, float] | None = None, seed: int = 0) -> None:
        splits = dict(splits or DEFAULT_SPLITS)
        check_split_names(splits)
        total = sum(splits.values())
        if total <= 0 or any(not v >= 0 for v in splits.values()):
            raise UserError(f"split shares must be non-negative with a positive sum, got {splits}")
        self.names = [k for k, v in splits.items() if v > 0]
        acc, self.bounds = 0.0, []
        for k in self.names:
            acc += splits[k] / total
            self.bounds.append(acc)
        self.bounds[-1] = 1.0
        self.salt = f"taosr1-split:{seed}:".encode()

    def __call__(self, query: str) -> str:
        h = hashlib.blake2b(self.salt + normalize_query(query).encode("utf-8", "surrogatepass"), digest_size=8)
        u = int.from_bytes(h.digest(), "big") / 2**64
        for name, b in zip(self.names, self.bounds, strict=True):
            if u < b:
                return name
        return self.names[-1]


def split_pairs(pairs: Iterable[Pair], splits: Mapping[str, float] | None = None, seed: int = 0
                ) -> dict[str, list[Pair]]:
    """Group pairs into splits by query (in memory; see :class:`QuerySplitter` for streaming).

    Example:
        >>> from taosr1_verl.data.synth import generate_synthetic
        >>> parts = split_pairs(generate_synthetic(2000), seed=0)
        >>> sorted(parts), not ({p.query for p in parts["train"]} & {p.query for p in parts["test"]})
        (['test', 'train', 'val'], True)
    """
    splitter = QuerySplitter(splits, seed)
    out: dict[str, list[Pair]] = {name: [] for name in splitter.names}
    for p in pairs:
        out[splitter(p.query)].append(p)
    return out
