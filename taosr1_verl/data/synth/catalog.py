"""Seeded synthetic catalog: queries of the hard kinds TaoSR1 targets, items, and rule-decided labels.

Every label comes from :func:`taosr1_verl.data.synth.kb.judge` over the rule KB (``rules.yaml``). To hit a
requested label mix, the generator first draws a target level per item and builds an item that should
get it (e.g. for Mismatch: a same-family category, a conflicting key attribute, a violated negation or a
price over the limit), then labels it with the judge; the judge's verdict is what is stored.

Query kinds: ``category`` ("sofa"), ``attribute`` ("large blue velvet sofa"), ``negation`` ("sofa without
leather"), ``alternative`` ("alternative to Nordvik sofa"), ``price`` ("sofa under $400") and
``question`` ("what is a good blue sofa under $400?").
"""

from __future__ import annotations

import bisect
import itertools
import logging
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from taosr1_verl.config_types import parse_shares
from taosr1_verl.data.pairs import Pair, QuerySpec
from taosr1_verl.data.synth.kb import RuleKB, judge, load_rules

logger = logging.getLogger(__name__)

DEFAULT_LABEL_MIX: dict[int, float] = {4: 0.50, 3: 0.05, 2: 0.36, 1: 0.09}
"""The paper's offline label mix (4/3/2/1 = 50/5/36/9 %)."""
DEFAULT_KIND_MIX: dict[str, float] = {
    "category": 0.12, "attribute": 0.28, "negation": 0.16, "alternative": 0.12, "price": 0.16, "question": 0.16,
}
QUERY_KINDS: tuple[str, ...] = tuple(DEFAULT_KIND_MIX)


@dataclass(frozen=True)
class SynthConfig:
    """Options of :func:`generate_synthetic`."""

    n_pairs: int = 10_000
    """Number of (query, item) pairs."""
    seed: int = 0
    """Everything is a function of the seed (same seed, same pairs)."""
    label_mix: Mapping[int, float] = field(default_factory=lambda: dict(DEFAULT_LABEL_MIX))
    """Target share of each level (normalised); the judge decides the final labels."""
    kind_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_KIND_MIX))
    """Share of each query kind."""
    items_per_query: int = 8
    """Items per query (the last query may get fewer)."""
    title_attr_prob: float = 0.5
    """Chance that a stated attribute is also written into the title."""
    describe: bool = False
    """Add a one-sentence description (longer prompts; off for tiny models)."""
    rules_path: str | None = None
    """A rule KB YAML file; ``None`` means the packaged ``rules.yaml``."""

    def __post_init__(self) -> None:
        if self.n_pairs < 0:
            raise ValueError(f"n_pairs must be >= 0, got {self.n_pairs}")
        if self.items_per_query < 1:
            raise ValueError(f"items_per_query must be >= 1, got {self.items_per_query}")
        bad = [k for k in self.label_mix if k not in (1, 2, 3, 4)]
        if bad or any(v < 0 for v in self.label_mix.values()) or sum(self.label_mix.values()) <= 0:
            raise ValueError(f"label_mix must map levels 1..4 to non-negative weights, got {dict(self.label_mix)}")
        bad = [k for k in self.kind_mix if k not in QUERY_KINDS]
        if bad or any(v < 0 for v in self.kind_mix.values()) or sum(self.kind_mix.values()) <= 0:
            raise ValueError(f"kind_mix must map kinds {QUERY_KINDS} to non-negative weights, got {dict(self.kind_mix)}")


def parse_mix(text: str) -> dict[int, float]:
    """``"50/5/36/9"`` (levels 4/3/2/1) or ``"4:50,3:5,2:36,1:9"`` -> ``{4: .5, 3: .05, 2: .36, 1: .09}``.

    Example:
        >>> parse_mix("25/25/25/25")[3]
        0.25
    """
    return parse_shares(text, (4, 3, 2, 1), key=int, pair_sep=":", what="label mix",
                        expected="'50/5/36/9' (levels 4/3/2/1) or '4:50,3:5,2:36,1:9'")


class WeightedChooser:
    """Weighted choice by bisect on a cumulative table (much faster than ``random.choices`` per call)."""

    __slots__ = ("keys", "cum")

    def __init__(self, weights: Mapping) -> None:
        items = [(k, w) for k, w in weights.items() if w > 0]
        self.keys = [k for k, _ in items]
        self.cum = list(itertools.accumulate(w for _, w in items))

    def __call__(self, rng: random.Random):
        return self.keys[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]


class _Generator:
    def __init__(self, cfg: SynthConfig, kb: RuleKB) -> None:
        self.cfg = cfg
        self.kb = kb
        self.rng = random.Random(cfg.seed)
        self.kind = WeightedChooser(cfg.kind_mix)
        self.level = WeightedChooser(cfg.label_mix)
        self.attr_names = tuple(kb.attributes)
        self.key_attrs = tuple(a for a in self.attr_names if a in kb.key_attributes)
        # Words in a query: minor attributes first ("large blue velvet sofa").
        self.word_order = tuple(sorted(self.attr_names, key=lambda a: a in kb.key_attributes))
        self.families = tuple(kb.families)

    # ---- queries -------------------------------------------------------------------------------
    def query(self) -> tuple[QuerySpec, str]:
        rng, kb = self.rng, self.kb
        kind = self.kind(rng)
        category = rng.choice(kb.main_categories)
        fam = kb.family_of[category]
        required: list[tuple[str, str]] = []
        excluded: tuple[tuple[str, str], ...] = ()
        max_price = alt_brand = None

        def add_required(n: int, avoid: tuple[str, ...] = ()) -> None:
            for a in rng.sample([a for a in self.attr_names if a not in avoid], n):
                required.append((a, rng.choice(kb.attributes[a])))

        def draw_price() -> int:
            lo, hi = kb.prices[fam]
            return int(rng.uniform(lo * 1.5, hi * 0.7)) // 10 * 10

        if kind == "attribute":
            add_required(rng.choice((1, 1, 2)))
        elif kind == "negation":
            a = rng.choice(self.key_attrs)
            excluded = ((a, rng.choice(kb.attributes[a])),)
            add_required(rng.choice((0, 1)), avoid=(a,))
        elif kind == "alternative":
            alt_brand = rng.choice(kb.brands)
            add_required(rng.choice((0, 1)))
        elif kind == "price":
            max_price = draw_price()
            add_required(rng.choice((0, 1)))
        elif kind == "question":
            add_required(1)
            if rng.random() < 0.5:
                max_price = draw_price()
        order = {a: i for i, a in enumerate(self.word_order)}
        required.sort(key=lambda av: order[av[0]])
        spec = QuerySpec(kind, category, tuple(required), excluded, max_price, alt_brand)
        return spec, self.render(spec)

    def render(self, spec: QuerySpec) -> str:
        rng = self.rng
        base = " ".join([v for _, v in spec.required] + [spec.category])
        if spec.kind == "negation":
            v = spec.excluded[0][1]
            return rng.choice((f"{base} without {v}", f"{base} not {v}", f"non-{v} {base}"))
        if spec.kind == "alternative":
            b = spec.alt_brand
            return rng.choice((f"alternative to {b} {base}", f"{base} like {b} but another brand",
                               f"{base} other than {b}"))
        if spec.kind == "price":
            p = spec.max_price
            return rng.choice((f"{base} under ${p}", f"{base} below {p} dollars", f"{base} max ${p}"))
        if spec.kind == "question":
            stem = rng.choice(("what is a good", "which", "where can i find a"))
            tail = f" under ${spec.max_price}" if spec.max_price is not None else ""
            return f"{stem} {base}{tail}?"
        return base

    # ---- items ---------------------------------------------------------------------------------
    def item(self, spec: QuerySpec, target: int) -> tuple[str, dict[str, str], int, str]:
        """(category, attributes, price, brand) built to get ``target`` from the judge."""
        rng, kb = self.rng, self.kb
        fam = kb.family_of[spec.category]
        category = spec.category
        attrs = {a: rng.choice(vals) for a, vals in kb.attributes.items()}
        for a, v in spec.required:
            attrs[a] = v
        for a, v in spec.excluded:
            if attrs[a] == v:
                attrs[a] = rng.choice([x for x in kb.attributes[a] if x != v])
        brand = rng.choice(kb.brands)
        if spec.alt_brand is not None and brand == spec.alt_brand:
            brand = rng.choice([b for b in kb.brands if b != spec.alt_brand])
        lo, hi = kb.prices[fam]
        price = rng.randint(lo, spec.max_price if spec.max_price is not None else hi)
        if target == 4:
            return category, attrs, price, brand
        if target == 1:
            other = rng.choice([f for f in self.families if f != fam])
            category = rng.choice(list(itertools.chain.from_iterable(kb.families[other].items())))
            lo, hi = kb.prices[other]
            return category, attrs, rng.randint(lo, hi), brand
        constrained = [a for a, _ in spec.required] + [a for a, _ in spec.excluded]
        if target == 3:
            ways = ["variant"]
            ways += ["minor"] * any(a not in kb.key_attributes for a, _ in spec.required)
            ways += ["unknown"] * bool(constrained)
            ways += ["brand"] * (spec.alt_brand is not None)
            way = rng.choice(ways)
            if way == "variant":
                category = kb.families[fam][spec.category]
            elif way == "minor":
                a, v = rng.choice([av for av in spec.required if av[0] not in kb.key_attributes])
                attrs[a] = rng.choice([x for x in kb.attributes[a] if x != v])
            elif way == "unknown":
                del attrs[rng.choice(constrained)]
            else:
                brand = spec.alt_brand
            return category, attrs, price, brand
        # target == 2
        ways = ["sibling"]
        ways += ["key"] * any(a in kb.key_attributes for a, _ in spec.required)
        ways += ["negation"] * bool(spec.excluded)
        ways += ["price"] * (spec.max_price is not None)
        way = rng.choice(ways)
        if way == "sibling":
            siblings = [c for c in kb.families[fam] if c != spec.category]
            siblings += [v for c, v in kb.families[fam].items() if c != spec.category]
            category = rng.choice(siblings)
        elif way == "key":
            a, v = rng.choice([av for av in spec.required if av[0] in kb.key_attributes])
            attrs[a] = rng.choice([x for x in kb.attributes[a] if x != v])
        elif way == "negation":
            a, v = rng.choice(spec.excluded)
            attrs[a] = v
        else:
            price = rng.randint(spec.max_price + 1, hi)
        return category, attrs, price, brand

    def pairs(self) -> Iterator[Pair]:
        cfg, kb, rng = self.cfg, self.kb, self.rng
        n_items = 0
        for qi in itertools.count():
            if n_items >= cfg.n_pairs:
                return
            spec, qtext = self.query()
            qid = f"sq{qi}"
            for _ in range(min(cfg.items_per_query, cfg.n_pairs - n_items)):
                target = self.level(rng)
                category, attrs, price, brand = self.item(spec, target)
                level, findings = judge(spec, category, attrs, price, brand, kb)
                shown = [attrs[a] for a in self.word_order if a in attrs and rng.random() < cfg.title_attr_prob]
                title = " ".join([brand, *shown, category])
                prompt_attrs = {"brand": brand, **attrs, "price": f"${price}"}
                desc = f"A {category} by {brand}, ${price}." if cfg.describe else ""
                iid = f"si{n_items}"
                yield Pair(
                    pair_id=f"{qid}:{iid}", index=n_items, query=qtext, title=title, attributes=prompt_attrs,
                    description=desc, level=level, query_id=qid, item_id=iid, query_kind=spec.kind,
                    category=category, brand=brand, price=float(price),
                    rules_used=tuple(dict.fromkeys(f.rule for f in findings)), spec=spec, source="synthetic",
                )
                n_items += 1


def iter_synthetic(config: SynthConfig | None = None, *, kb: RuleKB | None = None) -> Iterator[Pair]:
    """Stream synthetic pairs (same sequence as :func:`generate_synthetic`)."""
    config = config or SynthConfig()
    return _Generator(config, kb or load_rules(config.rules_path)).pairs()


def generate_synthetic(
    n_pairs: int = 10_000,
    seed: int = 0,
    *,
    label_mix: Mapping[int, float] | None = None,
    kind_mix: Mapping[str, float] | None = None,
    items_per_query: int = 8,
    describe: bool = False,
    rules_path: str | None = None,
) -> list[Pair]:
    """Generate ``n_pairs`` labelled synthetic pairs (about 8 items per query), seeded and offline.

    Example:
        >>> pairs = generate_synthetic(200, seed=1)
        >>> len(pairs), sorted({p.level for p in pairs})
        (200, [1, 2, 3, 4])
        >>> pairs[0].pair_id, pairs[0].query_kind in QUERY_KINDS
        ('sq0:si0', True)
    """
    cfg = SynthConfig(
        n_pairs=n_pairs, seed=seed, label_mix=dict(label_mix or DEFAULT_LABEL_MIX),
        kind_mix=dict(kind_mix or DEFAULT_KIND_MIX), items_per_query=items_per_query, describe=describe,
        rules_path=rules_path,
    )
    return list(iter_synthetic(cfg))


def item_facts(pair: Pair, kb: RuleKB) -> tuple[str, dict[str, str], float | None, str]:
    """``(category, KB attributes, price, brand)`` of a synthetic pair, as the judge reads them."""
    attrs = {a: pair.attributes[a] for a in kb.attributes if a in pair.attributes}
    return pair.category, attrs, pair.price, pair.brand
