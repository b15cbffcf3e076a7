"""An imperfect rule teacher for the synthetic catalog: the errors TaoSR1's stages exist to correct.

The rule teacher (:mod:`taosr1_verl.data.synth.teacher`) is perfect: every answer carries the gold label.
Real teachers are not, and TaoSR1 names how they fail. :class:`ImperfectTeacher` reproduces three kinds,
with the rates of ``teacher_errors.yaml`` (beside ``rules.yaml``; how the rates were set is in its comments):

* **long-tail rule misses**, the start of CoT error accumulation: step 1 (query understanding) drops a
  negation, a price limit or a brand alternative, or step 2 (item understanding) takes a close variant for
  the requested category; the rate depends on how the query phrases the constraint ("non-leather" is
  missed more often than "without leather"), so a student can learn where its teacher is blind;
* **misread attributes** (accumulation from step 2): the item's value of a constrained attribute is read
  wrongly (a match as a conflict, a conflict as a match);
* **discriminative hallucination**: the findings are right and the verdict is one tier more generous than
  they support (Mismatch called Related, Irrelevant called Mismatch).

The teacher reasons from what it read: the judge labels the misread query and item, so the reasoning
supports the wrong verdict it ends with (only hallucination leaves findings and verdict apart, which
:func:`~taosr1_verl.data.synth.teacher.findings_level` measures). Every draw is seeded by
``(seed, pair_id)``: the same pair gets the same answer in any order, in any process.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from taosr1_verl.data.pairs import Pair, QuerySpec
from taosr1_verl.data.synth.catalog import item_facts
from taosr1_verl.data.synth.kb import Finding, RuleKB, judge, load_rules
from taosr1_verl.data.synth.teacher import render_reasoning
from taosr1_verl.response import ResponseFormat, format_response
from taosr1_verl.schema import TAOSR1

logger = logging.getLogger(__name__)

PHRASINGS: dict[str, tuple[str, ...]] = {
    "negation": ("without", "not", "non-"),
    "price_limit": ("under", "below", "max", "question"),
    "brand_alternative": ("alternative to", "another brand", "other than"),
}
"""The ways the catalog phrases each long-tail constraint (``catalog._Generator.render``); ``question`` is a
price limit inside a question ("what is a good sofa under $400?")."""

READING_ERRORS: tuple[str, ...] = (
    "miss_negation", "ignore_price", "miss_brand_alternative", "miss_close_variant", "misread_attribute",
)
"""Errors of reading (query or item understanding); the verdict follows what was read."""
ERROR_KINDS: tuple[str, ...] = (*READING_ERRORS, "hallucination")
_RULE_OF = {"negation": "miss_negation", "price_limit": "ignore_price", "brand_alternative": "miss_brand_alternative"}
# One tier more generous: Irrelevant (Bad) -> Mismatch (Mid), Mismatch (Mid) -> Related (the nearest Good).
GENEROUS: dict[int, int] = {1: 2, 2: 3}
HALLUCINATION_RULES: tuple[str, ...] = ("R01", "R02", "R04", "R05", "R06")
"""The rules whose finding gives Irrelevant or Mismatch in the packaged KB (a hallucination overrides them)."""


@dataclass(frozen=True)
class TeacherErrors:
    """Rates of the imperfect teacher (see ``teacher_errors.yaml``); all in [0, 1]."""

    negation: Mapping[str, float]
    """Miss rate of an exclusion (rule R05) by phrasing: ``without``, ``not``, ``non-``."""
    price_limit: Mapping[str, float]
    """Miss rate of a price limit (R06) by phrasing: ``under``, ``below``, ``max``, ``question``."""
    brand_alternative: Mapping[str, float]
    """Miss rate of "an alternative to brand X" (R09) by phrasing."""
    close_variant: float
    """Rate at which a close-variant item is read as the requested category (R03 missed)."""
    misread_attribute: float
    """Rate per constrained attribute the item states, of reading its value wrongly."""
    hallucination: Mapping[str, float]
    """``{rule id: rate}`` of a verdict one tier more generous than correct findings whose decisive rule it is
    (the rules that give Irrelevant or Mismatch); with several decisive rules the lowest rate applies (more
    evidence is harder to overlook)."""
    source: str = "<teacher errors>"

    def rate_of(self, key: str) -> float:
        """The configured rate of an error key of :class:`TeacherAnswer` (``miss_negation:non-``)."""
        kind, _, sub = key.partition(":")
        if kind == "miss_close_variant":
            return self.close_variant
        if kind == "misread_attribute":
            return self.misread_attribute
        if kind == "hallucination":
            return self.hallucination[sub]
        for group, name in _RULE_OF.items():
            if kind == name:
                return getattr(self, group)[sub]
        raise ValueError(f"unknown teacher error key {key!r}")


def _rate(value: Any, source: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{source}: {key}: expected a rate in [0, 1], got {value!r}")
    return float(value)


def parse_teacher_errors(data: Any, source: str = "<teacher errors>") -> TeacherErrors:
    """Validate a parsed YAML document (errors name the file and the key)."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: top level: expected a mapping")
    known = {"version", "rates", "rule_misses", "misread_attribute", "hallucination"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; expected {sorted(known)}")
    for key in ("rule_misses", "misread_attribute", "hallucination"):
        if key not in data:
            raise ValueError(f"{source}: {key}: missing section")
    misses = data["rule_misses"]
    if not isinstance(misses, dict):
        raise ValueError(f"{source}: rule_misses: expected a mapping")
    want = {*PHRASINGS, "close_variant"}
    if set(misses) != want:
        raise ValueError(f"{source}: rule_misses: expected exactly {sorted(want)}, got {sorted(misses)}")
    groups: dict[str, dict[str, float]] = {}
    for group, phrasings in PHRASINGS.items():
        rates = misses[group]
        if not isinstance(rates, dict) or set(rates) != set(phrasings):
            raise ValueError(f"{source}: rule_misses.{group}: expected a rate for each of {list(phrasings)}, "
                             f"got {rates!r}")
        groups[group] = {p: _rate(rates[p], source, f"rule_misses.{group}.{p}") for p in phrasings}
    hall = data["hallucination"]
    if not isinstance(hall, dict) or set(hall) != set(HALLUCINATION_RULES):
        raise ValueError(f"{source}: hallucination: expected a rate for each rule that gives Irrelevant or "
                         f"Mismatch {list(HALLUCINATION_RULES)}, got {hall!r}")
    for name, value in (data.get("rates") or {}).items():
        _rate(value, source, f"rates.{name}")
    return TeacherErrors(
        negation=groups["negation"], price_limit=groups["price_limit"],
        brand_alternative=groups["brand_alternative"],
        close_variant=_rate(misses["close_variant"], source, "rule_misses.close_variant"),
        misread_attribute=_rate(data["misread_attribute"], source, "misread_attribute"),
        hallucination={str(k): _rate(v, source, f"hallucination.{k}") for k, v in hall.items()},
        source=source,
    )


@lru_cache(maxsize=8)
def _load_cached(path: str | None) -> TeacherErrors:
    import yaml

    if path is None:
        text = resources.files("taosr1_verl.data.synth").joinpath("teacher_errors.yaml").read_text(encoding="utf-8")
        source = "taosr1_verl/data/synth/teacher_errors.yaml"
    else:
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{source}: not valid YAML: {e}") from None
    return parse_teacher_errors(data, source)


def load_teacher_errors(path: str | os.PathLike[str] | None = None) -> TeacherErrors:
    """The packaged ``teacher_errors.yaml``, or the file at ``path``.

    Example:
        >>> load_teacher_errors().negation["non-"] >= load_teacher_errors().negation["without"]
        True
    """
    return _load_cached(None if path is None else str(path))


def phrasing(pair: Pair, group: str) -> str | None:
    """How ``pair``'s query phrases the constraint of ``group`` (a key of :data:`PHRASINGS`), or ``None``
    when the query has no such constraint."""
    spec = pair.spec
    q = f" {pair.query} "
    if group == "negation":
        if not spec.excluded:
            return None
        return "non-" if " non-" in q else "without" if " without " in q else "not"
    if group == "price_limit":
        if spec.max_price is None:
            return None
        if spec.kind == "question":
            return "question"
        return "under" if " under " in q else "below" if " below " in q else "max"
    if group == "brand_alternative":
        if spec.alt_brand is None:
            return None
        return "alternative to" if "alternative to" in q else "another brand" if "another brand" in q else "other than"
    raise ValueError(f"unknown constraint group {group!r}; expected one of {sorted(PHRASINGS)}")


@dataclass(frozen=True)
class TeacherAnswer:
    """One answer of the imperfect teacher, with what went wrong (for measurement and tests).

    Errors are named by key: the kind, then what selects its rate (``miss_negation:non-``,
    ``ignore_price:question``, ``hallucination:R02``; ``miss_close_variant`` and ``misread_attribute``
    alone); :meth:`TeacherErrors.rate_of` gives a key's configured rate.
    """

    level: int
    """The label the teacher gives."""
    gold: int
    reasoning: str
    """The five steps, written from what the teacher read."""
    read_level: int
    """The level the teacher's findings support (its reasoning's steps 1-4): the label unless it hallucinated."""
    errors: tuple[str, ...]
    """Keys of the errors that fired (a misread attribute once per attribute), harmless ones included."""
    chances: dict[str, int]
    """``{key: draws}``: each error this pair could have had, and how many times it was drawn."""


@dataclass(frozen=True)
class _Chances:
    """The reading errors a pair can have, in draw order."""

    rates: tuple[float, ...]
    keys: tuple[str, ...]
    attrs: tuple[str | None, ...]
    """The attribute a ``misread_attribute`` event reads (None for other kinds)."""


class ImperfectTeacher:
    """The rule teacher with the errors of a :class:`TeacherErrors` config; ``None`` config = perfect.

    Example:
        >>> from taosr1_verl.data.synth import generate_synthetic
        >>> t = ImperfectTeacher(load_teacher_errors(), seed=0)
        >>> p = generate_synthetic(1, seed=3)[0]
        >>> t(p) == t(p), t.answer(p).gold == p.level
        (True, True)
    """

    def __init__(self, errors: TeacherErrors | None, kb: RuleKB | None = None, seed: int = 0) -> None:
        self.errors = errors
        self.kb = kb or load_rules()
        self.seed = seed

    # ---- what can go wrong for a pair ------------------------------------------------------------
    def _chances(self, pair: Pair) -> _Chances:
        cfg, kb, spec = self.errors, self.kb, pair.spec
        rates: list[float] = []
        keys: list[str] = []
        attrs: list[str | None] = []
        for group in PHRASINGS:
            ph = phrasing(pair, group)
            if ph is not None:
                rates.append(getattr(cfg, group)[ph])
                keys.append(f"{_RULE_OF[group]}:{ph}")
                attrs.append(None)
        if kb.main_of_variant.get(pair.category) == spec.category:
            rates.append(cfg.close_variant)
            keys.append("miss_close_variant")
            attrs.append(None)
        _, item_attrs, _, _ = item_facts(pair, kb)
        for a, _ in spec.required:
            if a in item_attrs:
                rates.append(cfg.misread_attribute)
                keys.append("misread_attribute")
                attrs.append(a)
        return _Chances(tuple(rates), tuple(keys), tuple(attrs))

    def _read(self, pair: Pair, fired: Sequence[bool], chances: _Chances,
              rng: random.Random | None) -> tuple[QuerySpec, str, dict[str, str]]:
        """The query and item as the teacher read them, given which reading errors fired."""
        kb, spec = self.kb, pair.spec
        category, attrs, _, _ = item_facts(pair, kb)
        attrs = dict(attrs)
        wanted = dict(spec.required)
        for on, key, a in zip(fired, chances.keys, chances.attrs, strict=True):
            if not on:
                continue
            kind = key.split(":", 1)[0]
            if kind == "miss_negation":
                spec = replace(spec, excluded=())
            elif kind == "ignore_price":
                spec = replace(spec, max_price=None)
            elif kind == "miss_brand_alternative":
                spec = replace(spec, alt_brand=None)
            elif kind == "miss_close_variant":
                category = spec.category
            else:  # misread_attribute: a match read as a conflict, a conflict as the wanted value
                if attrs[a] == wanted[a]:
                    others = [v for v in kb.attributes[a] if v != wanted[a]]
                    attrs[a] = others[rng.randrange(len(others))] if rng is not None else others[0]
                else:
                    attrs[a] = wanted[a]
        return spec, category, attrs

    def _hallucination(self, level: int, findings: Sequence[Finding]) -> tuple[str, float] | None:
        """``(key, rate)`` of a too generous verdict over these findings (the decisive rule with the lowest
        rate: more evidence is harder to overlook), or None when the level has no more generous tier."""
        if level not in GENEROUS:
            return None
        rated = [(self.errors.hallucination.get(f.rule, 0.0), f.rule) for f in findings if f.level == level]
        if not rated:
            return None
        rate, rule = min(rated)
        return f"hallucination:{rule}", rate

    def _rng(self, pair: Pair) -> random.Random:
        return random.Random(f"taosr1-teacher-errors:{self.seed}:{pair.pair_id}")

    # ---- answers ---------------------------------------------------------------------------------
    def answer(self, pair: Pair) -> TeacherAnswer:
        """The teacher's label and five-step reasoning for ``pair``, with the errors that fired."""
        if pair.spec is None:
            raise ValueError(f"pair {pair.pair_id}: the rule teacher needs a synthetic pair (spec is None)")
        kb = self.kb
        category, attrs, price, brand = item_facts(pair, kb)
        gold, _ = judge(pair.spec, category, attrs, price, brand, kb)
        if self.errors is None:
            level, text = render_reasoning(pair.spec, category, attrs, price, brand, kb)
            return TeacherAnswer(level, gold, text, level, (), {})
        rng = self._rng(pair)
        chances = self._chances(pair)
        # A fixed number of draws per pair (one per reading chance, then one for hallucination) before any
        # other use of the stream.
        fired = [rng.random() < r for r in chances.rates]
        u_hall = rng.random()
        spec, cat, seen = self._read(pair, fired, chances, rng)
        read_level, findings = judge(spec, cat, seen, price, brand, kb)
        errors = [k for k, on in zip(chances.keys, fired, strict=True) if on]
        drawn: dict[str, int] = {}
        for k in chances.keys:
            drawn[k] = drawn.get(k, 0) + 1
        verdict = None
        hall = self._hallucination(read_level, findings)
        if hall is not None:
            drawn[hall[0]] = 1
            if u_hall < hall[1]:
                verdict = GENEROUS[read_level]
                errors.append(hall[0])
        level, text = render_reasoning(spec, cat, seen, price, brand, kb, verdict=verdict)
        return TeacherAnswer(level, gold, text, read_level, tuple(errors), drawn)

    def reasoning(self, pair: Pair) -> tuple[int, str]:
        """``(level, reasoning)``, the shape of :func:`~taosr1_verl.data.synth.teacher.rule_reasoning`."""
        a = self.answer(pair)
        return a.level, a.reasoning

    def __call__(self, pair: Pair, fmt: ResponseFormat = "post_cot") -> str:
        """The full response (label first for ``post_cot``), as :func:`rule_teacher` writes it."""
        level, text = self.reasoning(pair)
        return format_response(TAOSR1.by_level(level).label, text, fmt)

    # ---- exact label distribution ----------------------------------------------------------------
    def label_distribution(self, pair: Pair) -> dict[int, float]:
        """``{level: probability}`` of the teacher's label for ``pair`` over its random draws (exact: every
        combination of the pair's error events is judged). A student that imitates the teacher perfectly
        answers with these probabilities."""
        kb = self.kb
        category, attrs, price, brand = item_facts(pair, kb)
        if self.errors is None:
            return {judge(pair.spec, category, attrs, price, brand, kb)[0]: 1.0}
        chances = self._chances(pair)
        out: dict[int, float] = {}
        for fired in itertools.product((False, True), repeat=len(chances.rates)):
            p = 1.0
            for on, r in zip(fired, chances.rates, strict=True):
                p *= r if on else 1.0 - r
            if p == 0.0:
                continue
            # The level does not depend on which wrong value a misread draws (any other value conflicts).
            spec, cat, seen = self._read(pair, fired, chances, None)
            level, findings = judge(spec, cat, seen, price, brand, kb)
            hall = self._hallucination(level, findings)
            h = 0.0 if hall is None else hall[1]
            out[level] = out.get(level, 0.0) + p * (1.0 - h)
            if h:
                out[GENEROUS[level]] = out.get(GENEROUS[level], 0.0) + p * h
        return out


def implied_pass_at_k(teacher: ImperfectTeacher, pairs: Iterable[Pair], ks: Sequence[int] = (1, 2, 3, 4, 5)
                      ) -> dict[int, float]:
    """pass@k of a student that answers each pair with the teacher's own label distribution: the mean over
    pairs of ``1 - P(wrong)^k`` (what a model that imitates its teacher exactly would score when sampled).

    Example:
        >>> from taosr1_verl.data.synth import generate_synthetic
        >>> implied_pass_at_k(ImperfectTeacher(None), generate_synthetic(50), ks=(1,))
        {1: 1.0}
    """
    wrong = []
    for p in pairs:
        dist = teacher.label_distribution(p)
        wrong.append(max(0.0, 1.0 - dist.get(p.level, 0.0)))
    if not wrong:
        raise ValueError("no pairs to compute pass@k over")
    return {k: 1.0 - sum(w ** k for w in wrong) / len(wrong) for k in ks}


def teacher_for(errors: str | os.PathLike[str] | None, kb: RuleKB | None = None, seed: int = 0) -> ImperfectTeacher:
    """The teacher of an ``--teacher-errors`` option: a YAML path, ``"none"`` (the perfect rule teacher) or
    ``None`` (the packaged ``teacher_errors.yaml``)."""
    if errors is not None and str(errors).lower() == "none":
        return ImperfectTeacher(None, kb, seed)
    return ImperfectTeacher(load_teacher_errors(errors), kb, seed)
