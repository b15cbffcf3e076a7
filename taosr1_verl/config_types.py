"""Scalar config values against their type annotations: one place for the checks every config needs.

Values reach our configs from YAML (where PyYAML reads ``1e-6`` as text), Hydra overrides and JSON, and a
wrong type used to travel on until something far away broke (``malformed_penalty=abc`` made the reward
return the string ``'abc'`` as a score; ``learning_rate=fast`` failed inside TRL). :func:`coerce` converts
what is unambiguous (numeric text to a number, ``true``/``false`` to a bool), checks ``Literal`` choices,
and raises ``ValueError`` naming the option otherwise; :func:`mismatch` only checks (for values handed on
to verl unchanged). :class:`Bound` adds a range (a recipe key, a command-line count).
Annotations that are not plain scalars (lists, dicts, nested configs) are left alone.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from taosr1_verl.errors import UserError

K = TypeVar("K")

SCALARS: tuple[type, ...] = (bool, int, float, str)
_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_FLAGS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def scalar_kinds(hint: Any) -> tuple[tuple[type, ...], bool] | None:
    """``(scalar types, null allowed)`` of an annotation such as ``float`` or ``int | None``; ``None`` when
    it is not made of plain scalars only."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    kinds = tuple(a for a in args if a is not type(None))
    if not kinds or any(a not in SCALARS for a in kinds):
        return None
    return kinds, len(kinds) < len(args)


def describe(hint: Any) -> str:
    """``"a number"``, ``"an integer or null"``, ... for a scalar annotation."""
    found = scalar_kinds(hint)
    if found is None:
        return str(hint)
    kinds, optional = found
    return " or ".join(_WORDS[k] for k in kinds) + (" or null" if optional else "")


def _fits(kind: type, value: Any) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def mismatch(hint: Any, value: Any) -> str | None:
    """What ``value`` should be for the annotation ``hint`` (``None``: it fits, is null, or ``hint`` is not a
    plain scalar). No conversion: an int is a fine float, nothing else is converted."""
    found = scalar_kinds(hint)
    if found is None or value is None or any(_fits(k, value) for k in found[0]):
        return None
    return " or ".join(_WORDS[k] for k in found[0])


def _convert(kind: type, value: Any) -> Any:
    """``value`` as ``kind`` when the conversion is unambiguous, else raise ``ValueError``."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | str) and str(value).strip().lower() in _FLAGS:
            return _FLAGS[str(value).strip().lower()]
    elif kind is str:
        if isinstance(value, str):
            return value
    elif not isinstance(value, bool) and isinstance(value, int | float | str):
        number = float(value) if not isinstance(value, int) else value
        if kind is int:
            if isinstance(value, int):
                return value
            if isinstance(value, str):
                return int(value.strip())
            if number.is_integer():
                return int(number)
        else:
            return float(number)
    raise ValueError(value)


def coerce(hint: Any, value: Any, name: str) -> Any:
    """``value`` converted to the scalar annotation ``hint`` (numeric text to numbers, ``"true"`` to ``True``,
    integral floats to ints); a float must be finite. Raises ``ValueError`` ``"<name> must be <what>, got
    <value>"``. Values of non-scalar annotations are returned unchanged."""
    if typing.get_origin(hint) is typing.Literal:
        if value not in typing.get_args(hint):
            raise ValueError(f"{name} must be one of {list(typing.get_args(hint))}, got {value!r}")
        return value
    found = scalar_kinds(hint)
    if found is None:
        return value
    kinds, optional = found
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} must be {describe(hint)}, got None")
    for kind in kinds:
        try:
            out = _convert(kind, value)
        except ValueError:
            continue
        if kind is float and not math.isfinite(out):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        return out
    raise ValueError(f"{name} must be {describe(hint)}, got {value!r}")


def coerce_fields(obj: Any, prefix: str = "") -> None:
    """:func:`coerce` every plain-scalar field of the dataclass instance ``obj`` in place (frozen ones too);
    messages name the field as ``<prefix><field>``. Call it first thing in ``__post_init__``."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        new = coerce(hints[f.name], value, f"{prefix}{f.name}")
        if new is not value:
            object.__setattr__(obj, f.name, new)


@dataclass(frozen=True)
class Bound:
    """The allowed values of one numeric key: its type and an interval (``None`` ends are open-ended)."""

    kind: type
    """``int`` or ``float`` (an int is a fine float)."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    """``True``: ``low`` itself is not allowed (``> low``)."""
    optional: bool = False
    """``None`` (null) is allowed (verl then derives the value)."""

    def describe(self) -> str:
        """``"a positive integer"``, ``"a number in (0, 1]"``, ``"a number >= 0 (or null)"``, ..."""
        what = "an integer" if self.kind is int else "a number"
        if self.kind is int and self.low == 1 and self.high is None and not self.low_open:
            what = "a positive integer"
        elif self.low is not None and self.high is not None:
            what += f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            what += f" {'>' if self.low_open else '>='} {self.low:g}"
        return what + (" (or null)" if self.optional else "")

    def accepts(self, value: Any) -> bool:
        """``value`` has the kind (an int is a fine float; a bool is neither), is finite and in range."""
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, int | float) or (self.kind is int and
                                                                             not isinstance(value, int)):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or value <= self.high


COUNT = Bound(int, 1)
"""An integer >= 1 (batch sizes, epochs, samples)."""
POSITIVE = Bound(float, 0, low_open=True)
"""A number > 0 (learning rates, temperatures for sampling)."""
NON_NEGATIVE = Bound(float, 0)
"""A number >= 0 (coefficients, penalties)."""
UNIT = Bound(float, 0, 1)
"""A number in [0, 1] (thresholds, ratios)."""
FRACTION = Bound(float, 0, 1, low_open=True)
"""A number in (0, 1] (top-p, memory fractions)."""


def parse_shares(text: str, positional: Sequence[K], *, key: Callable[[str], K], pair_sep: str, what: str,
                 expected: str) -> dict[K, float]:
    """Shares written as ``name<pair_sep>value`` pairs joined by commas, or as values joined by ``/`` in the
    order of ``positional`` (all of them), normalised to sum 1. ``key`` converts a written name. A
    :class:`~taosr1_verl.errors.UserError` names ``what`` and the text otherwise: not numbers, a name twice,
    a share that is negative or not finite, a zero sum.

    Example:
        >>> parse_shares("3/1", ("a", "b"), key=str, pair_sep="=", what="shares", expected="'a=3,b=1' or '3/1'")
        {'a': 0.75, 'b': 0.25}
        >>> parse_shares("2:1,1:1", (2, 1), key=int, pair_sep=":", what="mix", expected="'1/1'")
        {2: 0.5, 1: 0.5}
    """
    try:
        if pair_sep in text:
            items = [(key(k.strip()), float(v)) for k, v in (p.split(pair_sep) for p in text.split(","))]
        else:
            items = list(zip(positional, (float(x) for x in text.split("/")), strict=True))
    except ValueError:
        raise UserError(f"{what} {text!r}: expected {expected}") from None
    raw = dict(items)
    if len(raw) != len(items):
        raise UserError(f"{what} {text!r}: a name is given twice")
    if any(not math.isfinite(v) or v < 0 for v in raw.values()) or sum(raw.values()) <= 0:
        raise UserError(f"{what} {text!r}: shares must be finite, non-negative, with a positive sum")
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}
