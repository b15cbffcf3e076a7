"""The RL row reader: one rule for a missing or malformed field (an error naming the row and the field)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from taosr1_verl import rl_rows
from taosr1_verl.rl_rows import RowError

ROW = {"data_source": "syn", "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
       "reward_model": {"style": "rule", "ground_truth": "4"}, "extra_info": {"index": 7, "level": 4}}


def test_a_well_formed_row_reads_back():
    assert rl_rows.row_index(ROW, "r") == 7
    assert rl_rows.prompt_messages(ROW, "r") == ROW["prompt"]
    assert rl_rows.ground_truth(ROW, "r") == "4"
    assert rl_rows.gold_level(ROW, "taosr1", "r") == 4
    assert rl_rows.gold_level({"reward_model": {"ground_truth": "Exact"}}, "esci", "r") == 4
    assert rl_rows.class_level(ROW, "taosr1") == 4
    assert rl_rows.data_source(ROW, "r") == "syn"
    assert rl_rows.data_source({}, "r") == ""  # optional


@pytest.mark.parametrize(("row", "call", "message"), [
    ({"extra_info": {}}, rl_rows.row_index, r"f row 3: missing field 'extra_info.index' \(verl's RLHFDataset"),
    ({"extra_info": None}, rl_rows.row_index, "f row 3: missing field 'extra_info.index'"),
    ({}, rl_rows.row_index, "f row 3: missing field 'extra_info.index'"),
    ({"extra_info": {"index": -1}}, rl_rows.row_index, "f row 3: field 'extra_info.index' must be a non-negative int"),
    ({"extra_info": {"index": 1.5}}, rl_rows.row_index, "must be a non-negative int, got 1.5"),
    ({"extra_info": {"index": True}}, rl_rows.row_index, "must be a non-negative int, got True"),
    ({"reward_model": {}}, rl_rows.ground_truth, "f row 3: missing field 'reward_model.ground_truth'"),
    ({"reward_model": {"ground_truth": " "}}, rl_rows.ground_truth, "missing field 'reward_model.ground_truth' "),
    ({"prompt": []}, rl_rows.prompt_messages, "f row 3: field 'prompt' must be a non-empty list"),
    ({"prompt": "text"}, rl_rows.prompt_messages, "field 'prompt' must be a non-empty list"),
    ({"prompt": [{"role": "user"}]}, rl_rows.prompt_messages, r"field 'prompt\[0\]' must have string 'role'"),
    ({"data_source": 3}, rl_rows.data_source, "f row 3: field 'data_source' must be text"),
])
def test_missing_or_malformed_fields_name_the_row_and_field(row, call, message):
    with pytest.raises(RowError, match=message):
        call(row, "f row 3")


def test_gold_level_refuses_what_is_not_a_label_and_class_level_sets_it_apart():
    row = {"reward_model": {"ground_truth": "72"}}
    with pytest.raises(RowError, match="f row 0: field 'reward_model.ground_truth': "):
        rl_rows.gold_level(row, "taosr1", "f row 0")
    assert rl_rows.class_level(row, "taosr1") == rl_rows.UNKNOWN_LEVEL
    assert rl_rows.class_level({}, "taosr1") == rl_rows.UNKNOWN_LEVEL


def test_numpy_and_text_indices_are_ints():
    assert rl_rows.row_index({"extra_info": {"index": np.int32(5)}}, "r") == 5
    assert rl_rows.row_index({"extra_info": {"index": "12"}}, "r") == 12
    assert rl_rows.prompt_messages({"prompt": np.array([{"role": "user", "content": "q"}])}, "r")[0]["content"] == "q"


@given(st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=6), st.none(), st.booleans(),
                 st.lists(st.integers(), max_size=2)))
def test_any_index_value_is_a_key_or_a_row_error(value):
    try:
        key = rl_rows.row_index({"extra_info": {"index": value}}, "f row 9")
    except RowError as e:
        assert str(e).startswith("f row 9: ")
    else:
        assert isinstance(key, int) and key >= 0 and key == int(value)
