"""Text helpers of the feature fields: words, stems, n-grams, character trigrams, hashing, price limits.

The plain-Python definitions every feature is built from: :meth:`FeatureExtractor.transform_reference`
applies them pair by pair, and the vectorised extraction (:mod:`.columnar`) reproduces them over whole
columns and calls them for the few words of a query.

Example:
    >>> words("Red Sofa, 2.5m"), stem("sofas"), ngrams(["red", "sofa"])
    (['red', 'sofa', '2.5', 'm'], 'sofa', ['red', 'sofa', 'red_sofa'])
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
# "under $50", "below 50 dollars", "less than 50", "cheaper than 50", "< 50", "max 50"
_PRICE_LIMIT = re.compile(r"(?:under|below|less than|cheaper than|max|<)\s*\$?\s*([0-9]+(?:\.[0-9]+)?)")
NEGATIONS = ("without", "not", "no", "non", "except", "excluding")


def words(text: str) -> list[str]:
    """Lower-cased word tokens. Example: ``words("Red Sofa, 2.5m") == ["red", "sofa", "2.5", "m"]``."""
    return _WORD.findall(text.lower())


def stem(w: str) -> str:
    """Plural-insensitive matching ("sofas" vs "sofa"); deliberately crude and cheap."""
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def hash_token(token: str, salt: str, n_buckets: int) -> int:
    """Bucket id in ``[1, n_buckets)`` of a token (CRC32 with a per-field salt: stable across processes)."""
    return zlib.crc32(f"{salt}\x1f{token}".encode()) % (n_buckets - 1) + 1


def bag(tokens: Sequence[str], salt: str, n_buckets: int, length: int) -> list[int]:
    """The first ``length`` tokens hashed, padded with 0."""
    ids = [hash_token(t, salt, n_buckets) for t in tokens[:length]]
    return ids + [0] * (length - len(ids))


def ngrams(ws: Sequence[str]) -> list[str]:
    """Unigrams, then bigrams joined by ``_``."""
    return list(ws) + [f"{a}_{b}" for a, b in zip(ws, ws[1:], strict=False)]


def chargrams(ws: Sequence[str]) -> list[str]:
    """Character trigrams of each ``#word#``, word by word."""
    out: list[str] = []
    for w in ws:
        padded = f"#{w}#"
        out.extend(padded[i : i + 3] for i in range(len(padded) - 2))
    return out


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def price_limit(query: str) -> float | None:
    """The price limit a query states, if any. Example: ``price_limit("sofa under $300") == 300.0``."""
    m = _PRICE_LIMIT.search(query.lower())
    return float(m.group(1)) if m else None
