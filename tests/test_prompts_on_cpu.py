from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taosr1_verl.prompts import (
    ELLIPSIS,
    PromptConfig,
    build_messages,
    render_attributes,
    system_prompt,
    truncate,
)
from taosr1_verl.schema import ESCI, TAOSR1


def test_messages_define_labels_and_format():
    msgs = build_messages("sofa without arms", "Grey armless sofa", {"colour": "grey", "arms": "none"},
                          "A compact sofa.")
    system, user = msgs[0]["content"], msgs[1]["content"]
    for lv in TAOSR1.levels:
        assert f"{lv.label} = {lv.name}" in system
    assert "<think>" in system and "first line" in system
    assert user.splitlines() == ["Query: sofa without arms", "Item: Grey armless sofa",
                                 "Attributes: colour: grey; arms: none", "Description: A compact sofa."]


def test_shared_prefix_query_first():
    a = build_messages("oak table", "Table A")
    b = build_messages("oak table", "Chair B", {"colour": "red"})
    assert a[0] == b[0]
    assert a[1]["content"].split("\n")[0] == b[1]["content"].split("\n")[0] == "Query: oak table"


def test_pre_cot_and_schema_change_the_instructions():
    assert "last line" in system_prompt(TAOSR1, "pre_cot")
    assert "Substitute" in system_prompt(ESCI)
    assert len(system_prompt(instructions="compact")) < len(system_prompt()) / 2


def test_no_instructions_leaves_out_the_system_message():
    full = build_messages("oak table", "Table A", {"colour": "red"})
    bare = build_messages("oak table", "Table A", {"colour": "red"}, config=PromptConfig(instructions="none"))
    assert [m["role"] for m in bare] == ["user"]
    assert bare[0] == full[1]
    with pytest.raises(ValueError, match="instructions must be one of"):
        PromptConfig(instructions="short")


@pytest.mark.parametrize("query,title", [("", "t"), ("  ", "t"), ("q", ""), (None, "t"), ("q", None)])
def test_empty_query_or_title_rejected(query, title):
    with pytest.raises(ValueError, match="non-empty"):
        build_messages(query, title)


def test_long_fields_are_truncated_to_budget():
    cfg = PromptConfig(max_title_chars=30, max_description_chars=40)
    msgs = build_messages("q", "word " * 100, description="x" * 1000, config=cfg)
    lines = dict(line.split(": ", 1) for line in msgs[1]["content"].splitlines())
    assert len(lines["Item"]) <= 30 and lines["Item"].endswith(ELLIPSIS)
    assert len(lines["Description"]) <= 40


def test_render_attributes_skips_empty_values():
    assert render_attributes({"a": "1", "b": "", "c": None, "d": 2}) == "a: 1; d: 2"
    assert render_attributes(" free text ") == "free text"
    assert render_attributes(None) == ""


@given(st.text(max_size=400), st.integers(min_value=8, max_value=120))
def test_truncate_is_bounded_and_deterministic(text, budget):
    out = truncate(text, budget)
    assert len(out) <= budget
    assert out == truncate(text, budget)
    normalised = " ".join(text.split())
    if len(normalised) <= budget:
        assert out == normalised
    else:
        assert out.endswith(ELLIPSIS) and normalised.startswith(out[:-1].rstrip())


def test_prompt_config_validation():
    with pytest.raises(ValueError, match="max_title_chars"):
        PromptConfig(max_title_chars=2)
