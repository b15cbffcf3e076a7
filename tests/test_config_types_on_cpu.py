"""Scalar config values against their annotations (taosr1_verl.config_types): coerced when unambiguous,
refused by name otherwise; shared by RewardConfig, the DPO recipe and recipe validation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taosr1_verl.config_types import coerce, coerce_fields, describe, mismatch


@pytest.mark.parametrize(
    ("hint", "value", "out"),
    [(float, "1e-6", 1e-6), (float, 3, 3.0), (int, "12", 12), (int, 4.0, 4), (bool, "true", True), (bool, 0, False),
     (bool, "No", False), (str, "x", "x"), (int | None, None, None), (float | None, "0.5", 0.5),
     (Literal["a", "b"], "b", "b"), (list, "anything", "anything")],
)
def test_unambiguous_values_are_coerced(hint, value, out):
    got = coerce(hint, value, "opt")
    assert got == out and type(got) is type(out)


@pytest.mark.parametrize(
    ("hint", "value", "message"),
    [(float, "fast", "opt must be a number, got 'fast'"), (float, True, "must be a number"),
     (float, "nan", "must be a finite number"), (float, float("inf"), "must be a finite number"),
     (int, 1.5, "must be an integer"), (int, "1.5", "must be an integer"), (bool, "maybe", "true or false"),
     (bool, 2, "true or false"), (str, 3, "must be a string"), (float, None, "must be a number, got None"),
     (Literal["a", "b"], "c", r"must be one of \['a', 'b'\]"), (int | None, [1], "an integer or null")],
)
def test_other_values_are_refused_by_name(hint, value, message):
    with pytest.raises(ValueError, match=message):
        coerce(hint, value, "opt")


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=6)))
def test_a_float_option_is_a_finite_float_or_refused(value):
    try:
        out = coerce(float, value, "lr")
    except ValueError as e:
        assert str(e).startswith("lr must be")
        return
    assert type(out) is float and math.isfinite(out)


def test_mismatch_only_checks_and_allows_null():
    assert mismatch(float, 1) is None and mismatch(float, "1e-6") == "a number"
    assert mismatch(int, None) is None and mismatch(int, True) == "an integer"
    assert mismatch(dict, "x") is None and describe(int | None) == "an integer or null"


def test_coerce_fields_converts_a_frozen_dataclass_in_place():
    @dataclass(frozen=True)
    class Cfg:
        lr: float = 1.0
        steps: int = 1
        name: str = "x"

        def __post_init__(self) -> None:
            coerce_fields(self, "cfg ")

    assert Cfg(lr="2e-3", steps="7") == Cfg(lr=0.002, steps=7)
    with pytest.raises(ValueError, match="cfg steps must be an integer, got 'many'"):
        Cfg(steps="many")
