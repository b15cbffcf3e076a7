from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taosr1_verl.response import FORMATS, format_response, make_parser, parse_response
from taosr1_verl.schema import TAOSR1, WANDS

GOOD_POST = [
    ("4\n<think>\nexact match\n</think>", 4, "exact match"),
    ("  3\n<think>colour differs</think>  \n", 3, "colour differs"),
    ("2 \n\n<think>\n wrong category \n</think>", 2, "wrong category"),
    ("1\r\n<think>unrelated</think>\r\n", 1, "unrelated"),
]

BAD_POST = [
    ("", "empty"),
    ("   \n ", "empty"),
    ("4", "missing_think_block"),
    ("4\nbecause it matches", "missing_think_block"),
    ("<think>x</think>\n4", "no_label"),
    ("4\n3\n<think>x</think>", "text_before_think"),
    ("5\n<think>x</think>", "label_not_in_schema"),
    ("\uff14\n<think>full-width four</think>", "label_not_in_schema"),
    ("Label: 4\n<think>x</think>", "label_not_in_schema"),
    ("4\n<think>x</think><think>y</think>", "multiple_think_blocks"),
    ("4\n<think>x", "unclosed_think"),
    ("4\n</think>x<think>", "unclosed_think"),
    ("4\n<think>   </think>", "empty_reasoning"),
    ("4\n<think>x</think>\nso 4", "text_after_think"),
    ("4 <think>x</think>", "no_label"),
]


@pytest.mark.parametrize("text,level,reasoning", GOOD_POST)
def test_post_cot_well_formed(text, level, reasoning):
    p = parse_response(text)
    assert p.ok and p.level == level and p.label == str(level) and p.reasoning == reasoning


@pytest.mark.parametrize("text,reason", BAD_POST)
def test_post_cot_malformed_reasons(text, reason):
    p = parse_response(text)
    assert not p.ok and p.level is None and p.error == reason


@pytest.mark.parametrize("value", [None, 4, b"4\n<think>x</think>", ["4"], {"a": 1}])
def test_non_strings_are_malformed_not_errors(value):
    assert parse_response(value).error == "not_a_string"


def test_pre_cot():
    parse = make_parser(TAOSR1, "pre_cot")
    assert parse("<think>\nred oak, matches\n</think>\n4").level == 4
    assert parse(" <think>a</think>\n\n 3 \n").level == 3
    assert parse("4\n<think>a</think>").error == "text_before_think"
    assert parse("final answer").error == "missing_think_block"
    assert parse("<think>a</think>4").error == "label_not_on_own_line"
    assert parse("<think>a</think>\nthe answer\n4").error == "text_after_think"
    assert parse("<think>a</think>\n4 3").error == "label_not_in_schema"
    assert parse("<think>a</think>").error == "no_label"
    assert parse("<think>a</think><think>b</think>\n4").error == "multiple_think_blocks"


def test_schema_decides_the_label_set():
    assert parse_response("4\n<think>x</think>", WANDS).error == "label_not_in_schema"
    assert parse_response("3\n<think>x</think>", WANDS).level == 3


def test_unknown_format_rejected():
    with pytest.raises(ValueError, match="response format"):
        make_parser(TAOSR1, "cot_first")


@pytest.mark.parametrize("fmt", FORMATS)
@given(level=st.sampled_from([4, 3, 2, 1]),
       reasoning=st.text(min_size=1, max_size=200).filter(lambda s: s.strip() and "<think>" not in s and "</think>" not in s),
       pad=st.sampled_from(["", " ", "\n", "\t\n "]))
def test_format_then_parse_roundtrip(fmt, level, reasoning, pad):
    text = pad + format_response(str(level), reasoning, fmt) + pad
    p = parse_response(text, fmt=fmt)
    assert p.ok, (p.error, text)
    assert p.level == level and p.reasoning == reasoning.strip()


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=50), st.none(), st.integers()),
       st.sampled_from(FORMATS))
def test_parser_never_raises_and_is_consistent(text, fmt):
    p = parse_response(text, fmt=fmt)
    assert (p.error is None) == (p.level is not None)
    if p.ok:
        assert p.label in TAOSR1.labels and p.reasoning and isinstance(text, str)
        assert text.count("<think>") == 1 and text.count("</think>") == 1


@settings(max_examples=200)
@given(st.lists(st.sampled_from(["4", "3", "<think>", "</think>", "\n", " ", "x", "４", "5", "\u00a0"]), max_size=12))
def test_parser_on_adversarial_token_soup(parts):
    text = "".join(parts)
    p = parse_response(text)
    if p.ok:
        # What the parser accepted re-renders to an equivalent response, and the label leads the text.
        assert text.strip().split("\n", 1)[0].strip() == p.label
        again = parse_response(format_response(p.label, p.reasoning))
        assert (again.level, again.reasoning) == (p.level, p.reasoning)
    else:
        assert p.error


def test_megabyte_garbage_is_malformed():
    # Bounded time is measured in bench/bench_reward.py (speed is never a timed unit test).
    blobs = ["4\n<think>" + "a" * 1_000_000, "x" * 1_000_000, "<think>" * 150_000,
             "4\n<think>" + "y" * 1_000_000 + "</think>junk", "\n" * 1_000_000]
    assert [parse_response(b).error for b in blobs] == [
        "unclosed_think", "no_label", "no_label", "text_after_think", "empty"]
