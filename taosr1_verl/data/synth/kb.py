"""The rule knowledge base (``rules.yaml``) and the judge that labels a synthetic pair with it.

Rule *meanings* are fixed by id (R01..R10, see ``rules.yaml``); the vocabulary, the rule texts and the
level each rule gives are data. :func:`judge` returns the label and the findings (which rule fired and
why), which the rule teacher turns into a five-step reasoning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from taosr1_verl.data.pairs import QuerySpec

RULE_IDS: tuple[str, ...] = ("R01", "R02", "R03", "R04", "R05", "R06", "R07", "R08", "R09", "R10")


@dataclass(frozen=True)
class Rule:
    """One atomic rule."""

    id: str
    level: int
    text: str
    keywords: str = ""
    """Extra words for lexical retrieval (not shown to the model)."""


@dataclass(frozen=True)
class Finding:
    """A rule that fired for a pair, with a short note (``"colour red, not blue"``)."""

    rule: str
    level: int
    note: str


@dataclass(frozen=True)
class RuleKB:
    """Parsed ``rules.yaml``."""

    families: dict[str, dict[str, str]]
    """``{family: {main category: variant category}}``."""
    prices: dict[str, tuple[int, int]]
    attributes: dict[str, tuple[str, ...]]
    """``{attribute: values}`` in prompt order."""
    key_attributes: frozenset[str]
    brands: tuple[str, ...]
    rules: dict[str, Rule]
    source: str

    def __post_init__(self) -> None:
        fam_of: dict[str, str] = {}
        variant_of: dict[str, str] = {}
        for fam, cats in self.families.items():
            for main, variant in cats.items():
                fam_of[main] = fam
                fam_of[variant] = fam
                variant_of[variant] = main
        object.__setattr__(self, "family_of", fam_of)
        object.__setattr__(self, "main_of_variant", variant_of)
        object.__setattr__(self, "main_categories", tuple(c for cats in self.families.values() for c in cats))

    family_of: dict[str, str] = field(init=False, repr=False, compare=False)
    main_of_variant: dict[str, str] = field(init=False, repr=False, compare=False)
    main_categories: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def rule_text(self, rule_id: str) -> str:
        return self.rules[rule_id].text


def _err(source: str, where: str, msg: str) -> ValueError:
    return ValueError(f"{source}: {where}: {msg}")


def parse_rules(data: Any, source: str = "<rules>") -> RuleKB:
    """Validate a parsed YAML document and build a :class:`RuleKB` (errors name the file and the key)."""
    if not isinstance(data, dict):
        raise _err(source, "top level", "expected a mapping")
    for key in ("families", "prices", "attributes", "brands", "rules"):
        if key not in data:
            raise _err(source, key, "missing section")
    families: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    for fam, cats in data["families"].items():
        if not isinstance(cats, dict) or not cats:
            raise _err(source, f"families.{fam}", "expected a mapping {main category: variant category}")
        families[str(fam)] = {}
        for main, variant in cats.items():
            for c in (main, variant):
                if not isinstance(c, str) or not c.strip():
                    raise _err(source, f"families.{fam}", f"category {c!r} must be a non-empty string")
                if c in seen:
                    raise _err(source, f"families.{fam}", f"category {c!r} appears twice")
                seen.add(c)
            families[str(fam)][main] = variant
    if len(families) < 2:
        raise _err(source, "families", "need at least two families (Irrelevant items come from another one)")
    prices: dict[str, tuple[int, int]] = {}
    for fam in families:
        rng = data["prices"].get(fam)
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, int) for x in rng) and 0 < rng[0] < rng[1]):
            raise _err(source, f"prices.{fam}", f"expected [low, high] whole dollars with 0 < low < high, got {rng!r}")
        if rng[1] < 2 * rng[0]:
            raise _err(source, f"prices.{fam}", "high must be at least twice low (price limits need room)")
        prices[fam] = (rng[0], rng[1])
    attributes: dict[str, tuple[str, ...]] = {}
    key_attrs: set[str] = set()
    for name, spec in data["attributes"].items():
        if not isinstance(spec, dict) or spec.get("importance") not in ("key", "minor"):
            raise _err(source, f"attributes.{name}", "needs importance: key|minor")
        values = spec.get("values")
        if not isinstance(values, list) or len(values) < 3 or len(set(values)) != len(values):
            raise _err(source, f"attributes.{name}.values", "need at least three distinct values")
        attributes[str(name)] = tuple(str(v) for v in values)
        if spec["importance"] == "key":
            key_attrs.add(str(name))
    if not key_attrs:
        raise _err(source, "attributes", "at least one attribute must be key")
    brands = data["brands"]
    if not isinstance(brands, list) or len(brands) < 2:
        raise _err(source, "brands", "need at least two brands")
    rules: dict[str, Rule] = {}
    for i, r in enumerate(data["rules"]):
        if not isinstance(r, dict) or not {"id", "level", "text"} <= set(r):
            raise _err(source, f"rules[{i}]", "each rule needs id, level and text")
        if r["id"] not in RULE_IDS:
            raise _err(source, f"rules[{i}].id", f"unknown rule id {r['id']!r}; the judge implements {RULE_IDS}")
        if r["level"] not in (1, 2, 3, 4):
            raise _err(source, f"rules[{i}].level", f"must be 1..4, got {r['level']!r}")
        rules[r["id"]] = Rule(r["id"], int(r["level"]), str(r["text"]).strip(), str(r.get("keywords") or "").strip())
    missing = [rid for rid in RULE_IDS if rid not in rules]
    if missing:
        raise _err(source, "rules", f"missing rules {missing}")
    return RuleKB(families=families, prices=prices, attributes=attributes, key_attributes=frozenset(key_attrs),
                  brands=tuple(str(b) for b in brands), rules=rules, source=source)


@lru_cache(maxsize=8)
def _load_cached(path: str | None) -> RuleKB:
    import yaml

    if path is None:
        text = resources.files("taosr1_verl.data.synth").joinpath("rules.yaml").read_text(encoding="utf-8")
        source = "taosr1_verl/data/synth/rules.yaml"
    else:
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{source}: not valid YAML: {e}") from None
    return parse_rules(data, source)


def load_rules(path: str | os.PathLike[str] | None = None) -> RuleKB:
    """The packaged rule KB, or the one at ``path`` (a YAML file with the same sections).

    Example:
        >>> kb = load_rules()
        >>> kb.rules["R01"].level, "sofa" in kb.main_categories
        (1, True)
    """
    return _load_cached(None if path is None else str(path))


def judge(spec: QuerySpec, category: str, attributes: dict[str, str], price: float | None, brand: str,
          kb: RuleKB) -> tuple[int, list[Finding]]:
    """Label an item for a query by the KB's rules: ``(level, findings)``; the lowest level fired wins.

    ``findings`` lists every rule that fired, in rule order; for an Excellent item it is ``[R10]``.
    """
    rules = kb.rules
    found: list[Finding] = []

    def fire(rid: str, note: str) -> None:
        found.append(Finding(rid, rules[rid].level, note))

    q_fam = kb.family_of.get(spec.category)
    i_fam = kb.family_of.get(category)
    if q_fam is None or i_fam != q_fam:
        fire("R01", f"{category} is {i_fam or 'unknown'}, the query wants {q_fam or 'unknown'}")
    elif category != spec.category:
        if kb.main_of_variant.get(category) == spec.category:
            fire("R03", f"{category} is a close variant of {spec.category}")
        else:
            fire("R02", f"{category} is not {spec.category}")
    unknown: list[str] = []
    for attr, want in spec.required:
        have = attributes.get(attr)
        if have is None:
            unknown.append(attr)
        elif have != want:
            if attr in kb.key_attributes:
                fire("R04", f"{attr} {have}, not {want}")
            else:
                fire("R07", f"{attr} {have}, not {want}")
    for attr, banned in spec.excluded:
        have = attributes.get(attr)
        if have is None:
            unknown.append(attr)
        elif have == banned:
            fire("R05", f"{attr} is {banned}, which the query excludes")
    if spec.max_price is not None:
        if price is None:
            unknown.append("price")
        elif price > spec.max_price:
            fire("R06", f"price ${price:g} is over ${spec.max_price}")
    if unknown:
        fire("R08", f"{', '.join(unknown)} not stated")
    if spec.alt_brand is not None and brand == spec.alt_brand:
        fire("R09", f"brand is {brand} itself")
    if not found:
        fire("R10", "every constraint met")
        return rules["R10"].level, found
    order = {rid: i for i, rid in enumerate(RULE_IDS)}
    found.sort(key=lambda f: order[f.rule])
    return min(f.level for f in found), found
