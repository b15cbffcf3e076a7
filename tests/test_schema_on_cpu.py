from __future__ import annotations

import numpy as np
import pytest

from taosr1_verl.schema import ESCI, PRESETS, TAOSR1, WANDS, LabelLevel, get_schema, make_schema


def test_taosr1_preset_levels_labels_tiers():
    assert TAOSR1.labels == ("4", "3", "2", "1")
    assert [lv.name for lv in TAOSR1.levels] == ["Excellent", "Related", "Mismatch", "Irrelevant"]
    assert [TAOSR1.tier_of(k) for k in (4, 3, 2, 1)] == ["Good", "Good", "Mid", "Bad"]


def test_esci_and_wands_map_onto_ordinal_levels():
    assert [ESCI.normalize(x) for x in ("E", "S", "C", "I")] == [4, 3, 2, 1]
    assert [ESCI.tier_of(ESCI.normalize(x)) for x in ("exact", "Substitute", "complement", "i")] == [
        "Good", "Good", "Mid", "Bad"]
    assert [WANDS.normalize(x) for x in ("Exact", "Partial", "Irrelevant")] == [3, 2, 1]
    assert [WANDS.tier_of(k) for k in (3, 2, 1)] == ["Good", "Mid", "Bad"]


@pytest.mark.parametrize("value,level", [("4", 4), (4, 4), (np.int64(2), 2), (3.0, 3), ("Excellent", 4),
                                          (" related ", 3), ("irrelevant", 1)])
def test_normalize_accepts_strings_ints_names(value, level):
    assert TAOSR1.normalize(value) == level


@pytest.mark.parametrize("value", ["5", 0, 7, "Excelent", "", None, True, 2.5, "４", [4]])
def test_normalize_rejects_unknown_values_naming_them(value):
    with pytest.raises(ValueError, match="taosr1"):
        TAOSR1.normalize(value)


def test_schema_validation_errors():
    with pytest.raises(ValueError, match="used twice"):
        make_schema("x", [LabelLevel(2, "A", "1", "Good"), LabelLevel(1, "B", "1", "Bad")])
    with pytest.raises(ValueError, match="tier"):
        make_schema("x", [LabelLevel(2, "A", "2", "Great"), LabelLevel(1, "B", "1", "Bad")])
    with pytest.raises(ValueError, match="must not increase"):
        make_schema("x", [LabelLevel(2, "A", "2", "Bad"), LabelLevel(1, "B", "1", "Good")])
    with pytest.raises(ValueError, match="whitespace"):
        make_schema("x", [LabelLevel(2, "A", " 2", "Good"), LabelLevel(1, "B", "1", "Bad")])
    with pytest.raises(ValueError, match="unknown label schema"):
        get_schema("nope")


def test_make_schema_from_yaml_like_dicts():
    s = make_schema("bin", [{"level": 1, "name": "No", "label": "N", "tier": "Bad"},
                            {"level": 2, "name": "Yes", "label": "Y", "tier": "Good", "aliases": ["ok"]}])
    assert s.labels == ("Y", "N") and s.normalize("OK") == 2


def test_single_token_check_passes_on_tiny_tokenizer(tiny_tokenizer):
    for schema in PRESETS.values():
        ids = schema.label_token_ids(tiny_tokenizer)
        assert sorted(ids) == sorted(schema.level_values)
        assert [tiny_tokenizer.decode([ids[k]]) for k in schema.level_values] == list(schema.labels)


def test_single_token_check_names_the_offending_label(tiny_tokenizer):
    multi = make_schema("words", [LabelLevel(2, "Good", "relevant-item", "Good"), LabelLevel(1, "Bad", "1", "Bad")])
    with pytest.raises(ValueError, match=r"'relevant-item' \(Good\) -> \d+ tokens"):
        multi.check_single_token(tiny_tokenizer)
