"""Feature fields of the pre-ranking student, computed from (query, title, attributes, category, price).

Each field is one unit the AutoFAS search can keep or drop (:mod:`taosr1_verl.autofas.space` puts a
learnable gate on every field). Two kinds:

- ``bag`` fields: hashed tokens / n-grams, padded to a fixed length with id 0; the student embeds them
  and mean-pools (an ``Embedding`` + masked mean, which exports cleanly to ONNX). Expensive: a lookup per
  token.
- ``dense`` fields: a few hand-made match scores (text overlap, attribute match and conflict, category
  match, price against a price limit in the query), standardised with statistics from :meth:`fit`. Cheap.

Hashing uses CRC32 with a per-field salt, so ids are stable across processes and machines (Python's
``hash`` is salted per process). Everything here is plain Python/numpy: no torch.

Two implementations of one definition: :meth:`FeatureExtractor.transform_reference` computes each pair in plain
Python and is the specification; :meth:`FeatureExtractor.transform`, :meth:`~FeatureExtractor.catalog` and
:meth:`~FeatureExtractor.request` run the vectorised extraction of :mod:`.columnar` (item side once per catalog,
query side once per request), which must give the same arrays (tests/autofas/test_columnar_on_cpu.py).

Example:
    >>> p = Pair(pair_id="q1:i1", index=0, query="red sofa", title="Red velvet sofa", category="sofa")
    >>> ex = FeatureExtractor(FeatureConfig(n_buckets=1024)).fit([p])
    >>> batch = ex.transform([p])
    >>> batch["query_ngrams"].shape, batch["text_match"].shape
    ((1, 16), (1, 6))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from taosr1_verl.autofas.text import (
    NEGATIONS,
    bag,
    chargrams,
    jaccard,
    ngrams,
    price_limit,
    stem,
    words,
)
from taosr1_verl.data.pairs import Pair

if TYPE_CHECKING:
    from taosr1_verl.autofas.columnar import ItemFeatures


@dataclass(frozen=True)
class FieldSpec:
    """One feature field: ``bag`` of hashed ids of length ``size``, or ``dense`` of width ``size``."""

    name: str
    kind: Literal["bag", "dense"]
    size: int
    description: str


@dataclass(frozen=True)
class FeatureConfig:
    """Sizes of the feature fields."""

    n_buckets: int = 1 << 14
    """Hash buckets per bag field (id 0 is padding)."""
    embed_dim: int = 16
    """Embedding width of every bag field."""
    max_query_ngrams: int = 16
    max_title_ngrams: int = 32
    max_title_chargrams: int = 64
    max_attr_tokens: int = 24
    max_cross: int = 8

    def __post_init__(self) -> None:
        if self.n_buckets < 16:
            raise ValueError(f"FeatureConfig.n_buckets must be >= 16, got {self.n_buckets}")
        for name in ("embed_dim", "max_query_ngrams", "max_title_ngrams", "max_title_chargrams",
                     "max_attr_tokens", "max_cross"):
            if getattr(self, name) < 1:
                raise ValueError(f"FeatureConfig.{name} must be >= 1, got {getattr(self, name)}")


def field_specs(config: FeatureConfig) -> tuple[FieldSpec, ...]:
    """All fields, in the fixed order the student concatenates them."""
    c = config
    return (
        FieldSpec("query_ngrams", "bag", c.max_query_ngrams, "query word unigrams + bigrams"),
        FieldSpec("title_ngrams", "bag", c.max_title_ngrams, "title word unigrams + bigrams"),
        FieldSpec("title_chargrams", "bag", c.max_title_chargrams, "title character trigrams"),
        FieldSpec("attr_tokens", "bag", c.max_attr_tokens, "attribute key=value pairs and value words"),
        FieldSpec("category_id", "bag", 1, "item category"),
        FieldSpec("query_x_category", "bag", c.max_cross, "query word x item category crosses"),
        FieldSpec("text_match", "dense", 6, "query/title overlap: coverage both ways, jaccard, bigrams, "
                  "char-trigram jaccard, phrase containment"),
        FieldSpec("attr_match", "dense", 4, "query words matching this item's attribute values, query "
                  "words naming another value of one of its attribute keys (conflicts), negation"),
        FieldSpec("category_match", "dense", 2, "query words in the category name; query names another "
                  "category"),
        FieldSpec("price", "dense", 4, "log price, price limit in the query, within limit, log ratio"),
    )


class FeatureExtractor:
    """Turns pairs into per-field numpy arrays; :meth:`fit` learns the attribute-value vocabulary and the
    dense-field standardisation. State round-trips through :meth:`to_dict` / :meth:`from_dict` (JSON)."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self.specs = field_specs(self.config)
        self.value_keys: dict[str, list[str]] = {}
        self.categories: list[str] = []
        self.dense_mean: dict[str, list[float]] = {}
        self.dense_std: dict[str, list[float]] = {}

    @property
    def spec_by_name(self) -> dict[str, FieldSpec]:
        return {s.name: s for s in self.specs}

    def fit(self, pairs: Sequence[Pair]) -> FeatureExtractor:
        """Learn which words are attribute values (of which keys) and the category names, then the mean
        and standard deviation of every dense column."""
        value_keys: dict[str, set[str]] = {}
        cats: set[str] = set()
        for p in pairs:
            for k, v in p.attributes.items():
                for w in words(str(v)):
                    value_keys.setdefault(stem(w), set()).add(str(k).lower())
            if p.category:
                cats.add(" ".join(stem(w) for w in words(p.category)))
        self.value_keys = {w: sorted(ks) for w, ks in sorted(value_keys.items())}
        self.categories = sorted(c for c in cats if c)
        self.dense_mean, self.dense_std = {}, {}
        if pairs:
            # Without statistics yet, the dense fields come out unstandardised.
            dense = [s.name for s in self.specs if s.kind == "dense"]
            raw = self.transform(pairs, fields=dense)
            for name, arr in raw.items():
                self.dense_mean[name] = arr.mean(0).tolist()
                std = arr.std(0)
                # A column constant in the fit data keeps its scale rather than being blown up.
                self.dense_std[name] = np.where(std < 1e-3, 1.0, std).tolist()
        return self

    def transform(self, pairs: Sequence[Pair], fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """``{field: array}``: int64 ``[n, size]`` ids for bag fields, standardised float32 ``[n, size]``
        for dense fields. ``fields`` restricts the output (a derived student needs only its own).
        Vectorised (:func:`.columnar.transform`); equal to :meth:`transform_reference`."""
        from taosr1_verl.autofas import columnar

        return columnar.transform(self, pairs, fields)

    def catalog(self, pairs: Sequence[Pair], fields: Sequence[str] | None = None) -> ItemFeatures:
        """The item side of the items of ``pairs`` (one catalog row per pair), computed once: what a
        pre-ranking index stores per item. ``fields`` limits it to what those fields need."""
        from taosr1_verl.autofas import columnar

        return columnar.build_items(self, columnar.ItemColumns.from_pairs(pairs), fields)

    def request(self, query: str, catalog: ItemFeatures, rows: np.ndarray | None = None,
                fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The fields of one request: ``query`` against catalog rows ``rows`` (all when ``None``); only the
        query side and the cross features are computed."""
        from taosr1_verl.autofas import columnar

        return columnar.request(self, query, catalog, rows, fields)

    def transform_reference(self, pairs: Sequence[Pair], fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """:meth:`transform` pair by pair in plain Python: the specification the vectorised path is tested
        against."""
        want = set(fields) if fields is not None else {s.name for s in self.specs}
        unknown = want - {s.name for s in self.specs}
        if unknown:
            raise ValueError(f"unknown feature fields {sorted(unknown)}; known: {[s.name for s in self.specs]}")
        out: dict[str, np.ndarray] = {}
        bags = [s for s in self.specs if s.kind == "bag" and s.name in want]
        if bags:
            rows: dict[str, list[list[int]]] = {s.name: [] for s in bags}
            for p in pairs:
                toks = self._bag_tokens(p, want)
                for s in bags:
                    rows[s.name].append(bag(toks[s.name], s.name, self.config.n_buckets, s.size))
            for s in bags:
                out[s.name] = np.asarray(rows[s.name], dtype=np.int64).reshape(len(pairs), s.size)
        dense_names = [s.name for s in self.specs if s.kind == "dense" and s.name in want]
        if dense_names:
            raw = self._dense(pairs, dense_names)
            for name in dense_names:
                mean = np.asarray(self.dense_mean.get(name, 0.0), dtype=np.float32)
                std = np.asarray(self.dense_std.get(name, 1.0), dtype=np.float32)
                out[name] = ((raw[name] - mean) / std).astype(np.float32)
        return {s.name: out[s.name] for s in self.specs if s.name in out}

    # ---- internals -------------------------------------------------------------------------------
    def _bag_tokens(self, p: Pair, want: set[str]) -> dict[str, list[str]]:
        # Only the requested fields are tokenised, so that per-field extraction cost can be timed.
        out: dict[str, list[str]] = {}
        qw = words(p.query) if want & {"query_ngrams", "query_x_category"} else []
        tw = words(p.title) if want & {"title_ngrams", "title_chargrams"} else []
        cat = "_".join(words(p.category)) or "<none>"
        if "query_ngrams" in want:
            out["query_ngrams"] = ngrams(qw)
        if "title_ngrams" in want:
            out["title_ngrams"] = ngrams(tw)
        if "title_chargrams" in want:
            out["title_chargrams"] = chargrams(tw)
        if "attr_tokens" in want:
            attr: list[str] = []
            for k, v in p.attributes.items():
                vw = words(str(v))
                attr.append(f"{str(k).lower()}={'_'.join(vw)}")
                attr.extend(vw)
            out["attr_tokens"] = attr
        if "category_id" in want:
            out["category_id"] = [cat]
        if "query_x_category" in want:
            out["query_x_category"] = [f"{stem(w)}|{cat}" for w in qw]
        return out

    def _dense(self, pairs: Sequence[Pair], names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        names = list(names) if names is not None else [s.name for s in self.specs if s.kind == "dense"]
        cols: dict[str, list[list[float]]] = {n: [] for n in names}
        cat_words = {w for c in self.categories for w in c.split()}
        for p in pairs:
            qw = [stem(w) for w in words(p.query)]
            tw = [stem(w) for w in words(p.title)]
            qs, ts = set(qw), set(tw)
            neg_at = next((i for i, w in enumerate(qw) if w in NEGATIONS), None)
            # Words after a negation are what the user does NOT want.
            negated = set(qw[neg_at + 1 : neg_at + 3]) if neg_at is not None else set()
            positive = qs - negated - set(NEGATIONS)
            if "text_match" in cols:
                qb = set(zip(qw, qw[1:], strict=False))
                tb = set(zip(tw, tw[1:], strict=False))
                qc, tc = set(chargrams(qw)), set(chargrams(tw))
                cols["text_match"].append([
                    len(positive & ts) / max(len(positive), 1),
                    len(qs & ts) / max(len(ts), 1),
                    jaccard(qs, ts),
                    len(qb & tb) / max(len(qb), 1),
                    jaccard(qc, tc),
                    float(bool(qw) and " ".join(qw) in " ".join(tw)),
                ])
            if "attr_match" in cols:
                item_vals: dict[str, set[str]] = {}
                for k, v in p.attributes.items():
                    item_vals.setdefault(str(k).lower(), set()).update(stem(w) for w in words(str(v)))
                all_vals = set().union(*item_vals.values()) if item_vals else set()
                match = len(positive & all_vals)
                # A query word that is a value of one of this item's keys, but not this item's value.
                conflict = sum(
                    1 for w in positive - all_vals - ts
                    if any(k in item_vals for k in self.value_keys.get(w, ()))
                )
                neg_hit = len(negated & (all_vals | ts))
                cols["attr_match"].append([float(match), float(conflict), float(neg_hit), float(bool(negated))])
            if "category_match" in cols:
                cw = {stem(w) for w in words(p.category)}
                other = (positive & cat_words) - cw - ts
                cols["category_match"].append([float(bool(positive & cw)), float(bool(other))])
            if "price" in cols:
                limit = price_limit(p.query)
                price = p.price if p.price is not None and math.isfinite(p.price) and p.price >= 0 else None
                lp = math.log1p(price) if price is not None else 0.0
                within = float(limit is not None and price is not None and price <= limit)
                ratio = 0.0
                if limit is not None and price is not None:
                    # An absurd limit ("under 1000...0", beyond float range) is infinite: the ratio's floor.
                    q = (price + 1.0) / (limit + 1.0)
                    ratio = max(-3.0, min(3.0, math.log(q))) if q > 0 else -3.0
                cols["price"].append([lp, float(limit is not None), within, ratio])
        spec = self.spec_by_name
        return {n: np.asarray(v, dtype=np.float32).reshape(len(pairs), spec[n].size) for n, v in cols.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "value_keys": self.value_keys,
            "categories": self.categories,
            "dense_mean": self.dense_mean,
            "dense_std": self.dense_std,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureExtractor:
        ex = cls(FeatureConfig(**d["config"]))
        ex.value_keys = {k: list(v) for k, v in d["value_keys"].items()}
        ex.categories = list(d["categories"])
        ex.dense_mean = {k: list(v) for k, v in d["dense_mean"].items()}
        ex.dense_std = {k: list(v) for k, v in d["dense_std"].items()}
        return ex
