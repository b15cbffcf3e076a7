"""Synthetic catalog, rule KB and rule teacher."""

from __future__ import annotations

from collections import Counter

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from taosr1_verl.data.pairs import Pair
from taosr1_verl.data.synth import generate_synthetic, judge, load_rules, parse_mix, rule_teacher
from taosr1_verl.data.synth.catalog import QUERY_KINDS, item_facts
from taosr1_verl.data.synth.kb import parse_rules
from taosr1_verl.response import parse_response
from taosr1_verl.rewards import compute_score


def test_same_seed_same_pairs_other_seed_differs():
    a = generate_synthetic(300, seed=5)
    b = generate_synthetic(300, seed=5)
    c = generate_synthetic(300, seed=6)
    assert a == b
    assert [p.query for p in a] != [p.query for p in c]


def test_ids_unique_and_every_kind_and_level_present():
    pairs = generate_synthetic(3000, seed=0)
    assert len({p.pair_id for p in pairs}) == len(pairs)
    assert [p.index for p in pairs] == list(range(len(pairs)))
    assert set(Counter(p.query_kind for p in pairs)) == set(QUERY_KINDS)
    assert set(Counter(p.level for p in pairs)) == {1, 2, 3, 4}


@pytest.mark.parametrize("mix", ["50/5/36/9", "25/25/25/25", "10/40/40/10"])
def test_label_mix_is_followed(mix):
    want = parse_mix(mix)
    pairs = generate_synthetic(8000, seed=1, label_mix=want)
    got = Counter(p.level for p in pairs)
    for lv, share in want.items():
        assert abs(got[lv] / len(pairs) - share) < 0.02, (lv, got)


def test_labels_are_the_judges_verdict():
    kb = load_rules()
    for p in generate_synthetic(2000, seed=2):
        level, findings = judge(p.spec, *item_facts(p, kb), kb)
        assert level == p.level
        assert tuple(dict.fromkeys(f.rule for f in findings)) == p.rules_used


def test_hard_query_kinds_have_their_rules():
    pairs = generate_synthetic(6000, seed=3)
    fired = Counter(r for p in pairs for r in p.rules_used)
    # Every atomic rule is exercised.
    assert set(fired) == {f"R{i:02d}" for i in range(1, 11)}
    neg = [p for p in pairs if p.query_kind == "negation"]
    assert all(any(w in p.query for w in ("without", " not ", "non-")) for p in neg)
    # A negation violated is a Mismatch, never better.
    assert all(p.level <= 2 for p in neg if "R05" in p.rules_used)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 60),
       mix=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda w: sum(w) > 0.05))
def test_rule_teacher_always_scores_full_reward(seed, n, mix):
    label_mix = dict(zip((4, 3, 2, 1), mix, strict=True))
    for p in generate_synthetic(n, seed=seed, label_mix=label_mix):
        response = rule_teacher(p)
        parsed = parse_response(response)
        assert parsed.ok and parsed.level == p.level
        assert compute_score("taosr1_synthetic", response, str(p.level))["score"] == 1.0
        # The reasoning has the five steps and cites a rule that fired.
        assert [line[:2] for line in parsed.reasoning.splitlines()] == ["1.", "2.", "3.", "4.", "5."]
        assert any(r in parsed.reasoning.splitlines()[-1] for r in p.rules_used)


def test_rule_teacher_rejects_real_pairs():
    p = Pair(pair_id="x", index=0, query="q", title="t", level=4)
    with pytest.raises(ValueError, match="synthetic pair"):
        rule_teacher(p)


def test_edited_rule_file_changes_labels(tmp_path):
    # The KB is data: raising R07 (size differs) from Related to Mismatch changes those labels.
    from importlib import resources

    data = yaml.safe_load(resources.files("taosr1_verl.data.synth").joinpath("rules.yaml").read_text())
    for r in data["rules"]:
        if r["id"] == "R07":
            r["level"] = 2
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data))
    pairs = generate_synthetic(4000, seed=4, rules_path=str(path))
    r07 = [p for p in pairs if "R07" in p.rules_used]
    assert r07 and all(p.level <= 2 for p in r07)
    kb = load_rules(path)
    assert all(compute_score("s", rule_teacher(p, kb), str(p.level))["acc"] == 1 for p in r07)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.pop("brands"), "brands: missing section"),
        (lambda d: d["rules"].pop(), r"missing rules \['R10'\]"),
        (lambda d: d["rules"].append({"id": "R99", "level": 1, "text": "x"}), "unknown rule id 'R99'"),
        (lambda d: d["prices"].update(seating=[10, 5]), "prices.seating"),
        (lambda d: d["attributes"]["colour"].update(importance="huge"), "attributes.colour"),
    ],
)
def test_bad_rule_files_name_the_key(mutate, match):
    from importlib import resources

    data = yaml.safe_load(resources.files("taosr1_verl.data.synth").joinpath("rules.yaml").read_text())
    mutate(data)
    with pytest.raises(ValueError, match=match):
        parse_rules(data, "my_rules.yaml")
