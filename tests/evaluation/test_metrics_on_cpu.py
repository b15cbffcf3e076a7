"""Label metrics against hand-computed values, and the verdict extraction on untrusted text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taosr1_verl.evaluation.metrics import (
    agreement,
    classification_report,
    extract_verdict,
    false_positive_rate,
    macro_f1,
    tier_macro_f1,
    verdict_contradiction,
)
from taosr1_verl.schema import TAOSR1, WANDS


def test_report_by_hand():
    gold = [4, 4, 3, 2, 2, 1]
    pred = [4, 3, 3, 4, None, 1]
    r = classification_report(gold, pred, TAOSR1)
    assert r["n"] == 6
    assert r["accuracy"] == pytest.approx(3 / 6)
    assert r["format_error_rate"] == pytest.approx(1 / 6)
    # per class: 4: P=1/2 R=1/2; 3: P=1/2 R=1; 2: P=0 R=0; 1: P=1 R=1
    pc = r["per_class"]
    assert pc["Excellent"]["precision"] == pytest.approx(0.5) and pc["Excellent"]["recall"] == pytest.approx(0.5)
    assert pc["Related"]["f1"] == pytest.approx(2 / 3)
    assert pc["Mismatch"]["f1"] == 0.0 and pc["Mismatch"]["support"] == 2
    assert r["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0 + 1) / 4)
    # gold Mid/Bad = rows 3, 4, 5; row 3 predicted Good -> 1/3
    assert r["false_positive_rate"] == pytest.approx(1 / 3)
    assert r["confusion"]["labels"] == ["Excellent", "Related", "Mismatch", "Irrelevant", "invalid"]
    assert r["confusion"]["matrix"][2] == [1, 0, 0, 0, 1]  # gold Mismatch: one judged 4, one malformed
    # tiers: gold G G G M M B, pred G G G G invalid B
    assert r["tier_accuracy"] == pytest.approx(4 / 6)
    assert r["tier_confusion"]["matrix"][1] == [1, 0, 0, 1]


def test_tier_and_label_names():
    assert tier_macro_f1(["Excellent", "Related"], ["3", "4"]) == 1.0
    assert macro_f1(["Excellent", "Related"], ["3", "4"]) == 0.0
    assert false_positive_rate([3, 2, 1], [3, 3, 2], WANDS) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="row 1"):
        macro_f1([4, 7], [4, 4])
    assert agreement([4, None, 2], [4, None, 1]) == pytest.approx(2 / 3)


def test_verdicts():
    assert extract_verdict("1. query ... 5. verdict: Mismatch", TAOSR1) == 2
    assert extract_verdict("Verdict - related. Later, verdict is EXCELLENT", TAOSR1) == 4  # last one wins
    assert extract_verdict("verdict: 3", TAOSR1) == 3
    assert extract_verdict("verdict: 9", TAOSR1) is None
    assert extract_verdict("the verdicts vary; excellent item", TAOSR1) is None
    assert extract_verdict("verdict: Exact", WANDS) == 3
    assert extract_verdict(None) is None
    out = verdict_contradiction([4, None, 2, 1], ["verdict: Excellent", "verdict: Related", "verdict: Related", "x"])
    assert out == {"n_parsed": 3, "n_with_verdict": 2, "coverage": 2 / 3, "n_contradicting": 1, "rate": 0.5}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_verdict_never_raises(text):
    v = extract_verdict(text, TAOSR1)
    assert v is None or v in TAOSR1.level_values
