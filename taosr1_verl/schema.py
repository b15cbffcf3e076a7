"""Label schemas: ordinal relevance levels, the label string the model writes, and the tier map.

A schema is the single source of truth for what a label is. The response parser, the reward, the data
builders and first-token scoring all take one. Level numbers are ordinal (higher = more relevant), so
CumPT's ``P(Y >= k)`` is well defined for every preset.

Presets:

============  =====  ===========  =====  =====
schema        level  name         label  tier
============  =====  ===========  =====  =====
``taosr1``    4      Excellent    ``4``  Good
              3      Related      ``3``  Good
              2      Mismatch     ``2``  Mid
              1      Irrelevant   ``1``  Bad
``esci``      4      Exact        ``4``  Good
              3      Substitute   ``3``  Good
              2      Complement   ``2``  Mid
              1      Irrelevant   ``1``  Bad
``wands``     3      Exact        ``3``  Good
              2      Partial      ``2``  Mid
              1      Irrelevant   ``1``  Bad
============  =====  ===========  =====  =====

The model always writes a single digit: digits are one token in every common tokenizer, which first-token
scoring needs (see :meth:`LabelSchema.check_single_token`). Raw data may use other spellings (ESCI's
``E``/``S``/``C``/``I``, WANDS' ``Exact``/``Partial``/``Irrelevant``); those are ``aliases``, accepted by the
data readers and as ground truth, never as model output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

TIERS: tuple[str, ...] = ("Good", "Mid", "Bad")


@dataclass(frozen=True)
class LabelLevel:
    """One relevance level of a schema."""

    level: int
    """Ordinal value; higher means more relevant."""
    name: str
    """Human name, e.g. ``"Excellent"``."""
    label: str
    """The exact string the model writes as its answer (must be one token of the model's tokenizer)."""
    tier: str
    """Online tier: one of ``Good``, ``Mid``, ``Bad``."""
    description: str = ""
    """One-line meaning, shown to the model in the prompt."""
    aliases: tuple[str, ...] = ()
    """Other spellings accepted in raw data and as ground truth (case-insensitive)."""


@dataclass(frozen=True)
class LabelSchema:
    """An ordered set of relevance levels. Build with :func:`make_schema` or use a preset."""

    name: str
    levels: tuple[LabelLevel, ...]
    _by_label: dict[str, LabelLevel] = field(init=False, repr=False, compare=False)
    _by_level: dict[int, LabelLevel] = field(init=False, repr=False, compare=False)
    _by_alias: dict[str, LabelLevel] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.levels) < 2:
            raise ValueError(f"schema {self.name!r}: needs at least two levels")
        levels = tuple(sorted(self.levels, key=lambda lv: -lv.level))
        object.__setattr__(self, "levels", levels)
        by_label: dict[str, LabelLevel] = {}
        by_level: dict[int, LabelLevel] = {}
        by_alias: dict[str, LabelLevel] = {}
        for lv in levels:
            if type(lv.level) is not int:
                raise ValueError(f"schema {self.name!r}: level {lv.level!r} of {lv.name!r} must be an int")
            if not lv.label or lv.label != lv.label.strip() or any(c in lv.label for c in "\r\n<>"):
                raise ValueError(
                    f"schema {self.name!r}: label string {lv.label!r} of {lv.name!r} must be non-empty, "
                    "without surrounding whitespace, newlines or angle brackets"
                )
            if lv.tier not in TIERS:
                raise ValueError(f"schema {self.name!r}: tier {lv.tier!r} of {lv.name!r} is not one of {TIERS}")
            if lv.label in by_label:
                raise ValueError(f"schema {self.name!r}: label string {lv.label!r} is used twice")
            if lv.level in by_level:
                raise ValueError(f"schema {self.name!r}: level {lv.level} is used twice")
            by_label[lv.label] = lv
            by_level[lv.level] = lv
            for alias in (lv.label, lv.name, *lv.aliases):
                key = alias.strip().casefold()
                other = by_alias.get(key)
                if other is not None and other is not lv:
                    raise ValueError(f"schema {self.name!r}: alias {alias!r} names both {other.name} and {lv.name}")
                by_alias[key] = lv
        tiers = [lv.tier for lv in levels]
        if [TIERS.index(t) for t in tiers] != sorted(TIERS.index(t) for t in tiers):
            raise ValueError(f"schema {self.name!r}: tiers must not increase with decreasing level, got {tiers}")
        object.__setattr__(self, "_by_label", by_label)
        object.__setattr__(self, "_by_level", by_level)
        object.__setattr__(self, "_by_alias", by_alias)

    # ---- views ---------------------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        """Label strings, from the most to the least relevant level."""
        return tuple(lv.label for lv in self.levels)

    @property
    def level_values(self) -> tuple[int, ...]:
        """Ordinal levels, descending."""
        return tuple(lv.level for lv in self.levels)

    @property
    def label_to_level(self) -> dict[str, int]:
        """``{label string: level}`` (exact strings only: the parser's lookup table)."""
        return {lv.label: lv.level for lv in self.levels}

    def __len__(self) -> int:
        return len(self.levels)

    def by_level(self, level: int) -> LabelLevel:
        try:
            return self._by_level[level]
        except KeyError:
            raise ValueError(f"schema {self.name!r}: no level {level!r}; levels are {self.level_values}") from None

    def level_of_label(self, label: str) -> int | None:
        """Level of an exact model-written label string, or ``None``."""
        lv = self._by_label.get(label)
        return None if lv is None else lv.level

    def tier_of(self, level: int) -> str:
        return self.by_level(level).tier

    def normalize(self, value: Any) -> int:
        """Level for a ground-truth or raw-data value: an int level, a label string, a name or an alias.

        Raises ``ValueError`` naming the value when it is not part of the schema, so that a data bug is
        never scored silently. Booleans and floats with a fractional part are rejected.
        """
        if isinstance(value, bool):
            raise ValueError(f"schema {self.name!r}: ground truth {value!r} is a bool, not a label")
        if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
            lv = self._by_level.get(int(value))
            if lv is None:
                raise ValueError(
                    f"schema {self.name!r}: unknown label level {value!r}; levels are {self.level_values}"
                )
            return lv.level
        if isinstance(value, float) and value.is_integer():
            return self.normalize(int(value))
        if isinstance(value, str):
            lv = self._by_alias.get(value.strip().casefold())
            if lv is None:
                raise ValueError(
                    f"schema {self.name!r}: unknown label {value!r}; expected one of "
                    f"{sorted({a for lv in self.levels for a in (lv.label, lv.name, *lv.aliases)})}"
                )
            return lv.level
        raise ValueError(f"schema {self.name!r}: unknown label {value!r} of type {type(value).__name__}")

    # ---- tokenizer check -----------------------------------------------------------------------
    def label_token_ids(self, tokenizer: Any) -> dict[int, int]:
        """``{level: token id}`` of each label string as the model would write it at the start of a turn.

        Raises ``ValueError`` naming every label that is not exactly one token, with its tokenisation.
        First-token scoring reads one logit per label, so this must hold for the model's tokenizer.
        """
        ids: dict[int, int] = {}
        problems: list[str] = []
        for lv in self.levels:
            toks = tokenizer.encode(lv.label, add_special_tokens=False)
            if len(toks) != 1:
                pieces = [tokenizer.decode([t]) for t in toks]
                problems.append(f"label {lv.label!r} ({lv.name}) -> {len(toks)} tokens {toks} {pieces}")
            else:
                ids[lv.level] = int(toks[0])
        if problems:
            raise ValueError(
                f"schema {self.name!r}: every label must be exactly one token of the tokenizer "
                f"{getattr(tokenizer, 'name_or_path', type(tokenizer).__name__)!r}; " + "; ".join(problems)
            )
        if len(set(ids.values())) != len(ids):
            raise ValueError(f"schema {self.name!r}: two labels share one token id: {ids}")
        return ids

    def check_single_token(self, tokenizer: Any) -> None:
        """Raise ``ValueError`` unless every label string is exactly one distinct token."""
        self.label_token_ids(tokenizer)


def make_schema(name: str, levels: Iterable[LabelLevel | dict[str, Any]]) -> LabelSchema:
    """Build a schema from ``LabelLevel`` objects or plain dicts (e.g. parsed from YAML)."""
    built = []
    for lv in levels:
        if isinstance(lv, dict):
            lv = dict(lv)
            lv["aliases"] = tuple(lv.get("aliases", ()))
            lv = LabelLevel(**lv)
        built.append(lv)
    return LabelSchema(name=name, levels=tuple(built))


TAOSR1 = make_schema(
    "taosr1",
    [
        LabelLevel(4, "Excellent", "4", "Good", "the item is exactly what the query asks for", ("excellent",)),
        LabelLevel(3, "Related", "3", "Good", "mostly fits; a minor attribute differs or is unknown", ("related",)),
        LabelLevel(2, "Mismatch", "2", "Mid", "same broad need, but a key attribute or the category conflicts"),
        LabelLevel(1, "Irrelevant", "1", "Bad", "unrelated to the query"),
    ],
)

ESCI = make_schema(
    "esci",
    [
        LabelLevel(4, "Exact", "4", "Good", "relevant for the query and satisfies all its specifications", ("E",)),
        LabelLevel(3, "Substitute", "3", "Good", "somewhat relevant; could be used as a functional substitute", ("S",)),
        LabelLevel(2, "Complement", "2", "Mid", "does not fulfil the query but could be used with an exact item", ("C",)),
        LabelLevel(1, "Irrelevant", "1", "Bad", "irrelevant to the query", ("I",)),
    ],
)

WANDS = make_schema(
    "wands",
    [
        LabelLevel(3, "Exact", "3", "Good", "the product fully matches the query"),
        LabelLevel(2, "Partial", "2", "Mid", "the product matches the query partially"),
        LabelLevel(1, "Irrelevant", "1", "Bad", "the product is irrelevant to the query"),
    ],
)

PRESETS: dict[str, LabelSchema] = {s.name: s for s in (TAOSR1, ESCI, WANDS)}


def get_schema(schema: str | LabelSchema | None = None) -> LabelSchema:
    """A preset by name (``taosr1``, ``esci``, ``wands``), or the schema itself; ``None`` means ``taosr1``."""
    if schema is None:
        return TAOSR1
    if isinstance(schema, LabelSchema):
        return schema
    try:
        return PRESETS[schema]
    except KeyError:
        raise ValueError(f"unknown label schema {schema!r}; presets are {sorted(PRESETS)}") from None


def levels_array(schema: LabelSchema, values: Sequence[Any]) -> list[int]:
    """Normalise many ground-truth values at once (raises on the first unknown one, naming its position)."""
    out = []
    for i, v in enumerate(values):
        try:
            out.append(schema.normalize(v))
        except ValueError as e:
            raise ValueError(f"row {i}: {e}") from None
    return out
