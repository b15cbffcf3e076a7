"""The imperfect teacher: configured rates hold on generated data, and every error reads as a real one."""

from __future__ import annotations

import math
from collections import Counter
from importlib import resources

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from taosr1_verl.data.synth import generate_synthetic, rule_teacher
from taosr1_verl.data.synth.catalog import item_facts
from taosr1_verl.data.synth.kb import judge, load_rules
from taosr1_verl.data.synth.teacher import findings_level
from taosr1_verl.data.synth.teacher_errors import (
    ERROR_KINDS,
    GENEROUS,
    ImperfectTeacher,
    TeacherErrors,
    implied_pass_at_k,
    load_teacher_errors,
    parse_teacher_errors,
    teacher_for,
)
from taosr1_verl.response import parse_response
from taosr1_verl.rewards import compute_score
from taosr1_verl.schema import TAOSR1

PAPER = {1: 0.6738, 5: 0.8173}


@pytest.fixture(scope="module")
def pairs():
    return generate_synthetic(24_000, seed=11)


@pytest.fixture(scope="module")
def answers(pairs):
    teacher = ImperfectTeacher(load_teacher_errors(), seed=3)
    return [teacher.answer(p) for p in pairs]


def _tally(answers):
    drawn: Counter[str] = Counter()
    fired: Counter[str] = Counter()
    for a in answers:
        drawn.update(a.chances)
        fired.update(a.errors)
    return drawn, fired


def _worst_p(answers, cfg: TeacherErrors) -> tuple[float, str]:
    """The smallest two-sided binomial p-value over the error keys with enough draws to test."""
    drawn, fired = _tally(answers)
    worst = (1.0, "")
    for key, n in drawn.items():
        if n < 30:
            continue
        p = binomtest(fired[key], n, cfg.rate_of(key)).pvalue
        worst = min(worst, (p, f"{key}: {fired[key]}/{n} vs {cfg.rate_of(key)}"))
    return worst


def test_measured_rates_match_the_config_within_sampling_error(answers):
    cfg = load_teacher_errors()
    drawn, _ = _tally(answers)
    # Every error kind gets tested, on every key with draws (blind spots and slips alike).
    assert {k.split(":")[0] for k, n in drawn.items() if n >= 30} == set(ERROR_KINDS)
    tested = sum(1 for n in drawn.values() if n >= 30)
    p, what = _worst_p(answers, cfg)
    # Bonferroni over the keys tested: a true config fails this 1 time in 1000.
    assert p > 1e-3 / tested, what


def test_the_binomial_check_catches_a_wrong_config(answers):
    # The same data against rates moved by 0.05 fails: the check has the power to fail.
    cfg = load_teacher_errors()
    shifted = TeacherErrors(
        negation={k: min(1.0, v + 0.05) for k, v in cfg.negation.items()}, price_limit=cfg.price_limit,
        brand_alternative=cfg.brand_alternative, close_variant=cfg.close_variant,
        misread_attribute=cfg.misread_attribute, hallucination=cfg.hallucination,
    )
    p, _ = _worst_p(answers, shifted)
    assert p < 1e-6


def test_every_error_kind_writes_reasoning_that_supports_its_verdict(answers):
    seen_wrong: Counter[str] = Counter()
    for a in answers:
        text = a.reasoning
        lines = text.splitlines()
        assert [line[:2] for line in lines] == ["1.", "2.", "3.", "4.", "5."]
        # The findings of steps 1-4 imply the level the teacher read, always.
        assert findings_level(text) == a.read_level
        kinds = {k.split(":")[0] for k in a.errors}
        verdict_line = lines[-1]
        assert TAOSR1.by_level(a.level).name in verdict_line
        if "hallucination" in kinds:
            # Findings as read, verdict exactly one tier more generous.
            assert a.level == GENEROUS[a.read_level]
            assert TAOSR1.tier_of(a.level) != TAOSR1.tier_of(a.read_level)
            if kinds == {"hallucination"}:
                assert a.read_level == a.gold  # findings right, verdict wrong
        else:
            # Error accumulation: the verdict follows what was read, and the reasoning supports it.
            assert a.level == a.read_level
        if a.level != a.gold:
            seen_wrong.update(kinds)
        if not a.errors:
            assert a.level == a.gold
    # Each kind, on its own or with others, produced wrong labels somewhere in the sample.
    assert set(seen_wrong) == set(ERROR_KINDS), seen_wrong


def test_reading_errors_show_in_the_step_they_start_from(pairs):
    teacher = ImperfectTeacher(load_teacher_errors(), seed=3)
    kb = load_rules()
    checked: Counter[str] = Counter()
    for p in pairs[:6000]:
        a = teacher.answer(p)
        query, item = a.reasoning.splitlines()[:2]
        kinds = {k.split(":")[0] for k in a.errors}
        if "miss_negation" in kinds:
            assert all(f"not {v}" not in query for _, v in p.spec.excluded)
            checked["miss_negation"] += 1
        if "ignore_price" in kinds:
            assert "max $" not in query
            checked["ignore_price"] += 1
        if "miss_brand_alternative" in kinds:
            assert "not brand" not in query
            checked["miss_brand_alternative"] += 1
        if "miss_close_variant" in kinds:
            assert item.startswith(f"2. Item: {p.spec.category};") and p.category != p.spec.category
            checked["miss_close_variant"] += 1
        if "misread_attribute" in kinds:
            _, attrs, _, _ = item_facts(p, kb)
            shown = dict(part.split(" ", 1) for part in item.removeprefix("2. Item: ").rstrip(".").split("; ")[2:]
                         if " " in part and not part.startswith("$"))
            assert any(shown.get(a) != v for a, v in attrs.items())
            checked["misread_attribute"] += 1
    assert set(checked) == {"miss_negation", "ignore_price", "miss_brand_alternative", "miss_close_variant",
                            "misread_attribute"}, checked


def test_label_distribution_is_exact(pairs):
    # Exact enumeration vs the sampled teacher: frequencies over 400 seeds agree within sampling error.
    cfg = load_teacher_errors()
    multi = [p for p in pairs[:3000] if len(ImperfectTeacher(cfg)._chances(p).rates) >= 2][:6]
    assert multi
    for p in multi:
        dist = ImperfectTeacher(cfg).label_distribution(p)
        assert math.isclose(sum(dist.values()), 1.0)
        n = 400
        got = Counter(ImperfectTeacher(cfg, seed=s).answer(p).level for s in range(n))
        for level, prob in dist.items():
            assert binomtest(got[level], n, prob).pvalue > 1e-4, (p.pair_id, level, got, dist)
        assert set(got) <= set(dist)


def test_the_committed_rates_give_the_papers_sft_pass_at_k():
    # How the rates were set (teacher_errors.yaml): a student imitating the teacher exactly has TaoSR1's
    # SFT pass@1 and pass@5. Other pairs of the catalog than those solved on.
    got = implied_pass_at_k(ImperfectTeacher(load_teacher_errors()), generate_synthetic(4000, seed=7), ks=(1, 5))
    for k, want in PAPER.items():
        assert abs(got[k] - want) < 0.015, got


def test_perfect_teacher_is_the_rule_teacher(pairs):
    perfect = teacher_for("none")
    for p in pairs[:500]:
        assert perfect(p) == rule_teacher(p)
        assert perfect.label_distribution(p) == {p.level: 1.0}
    assert implied_pass_at_k(perfect, pairs[:500]) == {k: 1.0 for k in range(1, 6)}


def test_answers_are_seeded_by_pair_not_by_order(pairs):
    t = ImperfectTeacher(load_teacher_errors(), seed=1)
    forward = [t(p) for p in pairs[:300]]
    backward = [t(p) for p in reversed(pairs[:300])][::-1]
    assert forward == backward
    other = ImperfectTeacher(load_teacher_errors(), seed=2)
    assert [other(p) for p in pairs[:300]] != forward


def test_pre_cot_answers_parse_with_the_same_label(pairs):
    t = ImperfectTeacher(load_teacher_errors())
    for p in pairs[:300]:
        a, b = parse_response(t(p, "post_cot")), parse_response(t(p, "pre_cot"), fmt="pre_cot")
        assert a.ok and b.ok and a.level == b.level and a.reasoning == b.reasoning


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), teacher_seed=st.integers(0, 2**16), n=st.integers(1, 40))
def test_any_answer_is_well_formed_and_rewarded_by_its_own_label(seed, teacher_seed, n):
    t = ImperfectTeacher(load_teacher_errors(), seed=teacher_seed)
    kb = load_rules()
    for p in generate_synthetic(n, seed=seed):
        a = t.answer(p)
        text = t(p)
        assert compute_score("s", text, str(a.level))["score"] == 1.0
        assert compute_score("s", text, str(p.level))["acc"] == int(a.level == p.level)
        assert a.gold == judge(p.spec, *item_facts(p, kb), kb)[0] == p.level


def test_findings_level_on_untrusted_text():
    assert findings_level(None) is None
    assert findings_level("<think>" * 1000) is None
    assert findings_level("3. Category: ok [R99] [R02, R77].\n5. Verdict: Excellent") == 2
    assert findings_level("Category ok. Verdict: Mismatch [R01]") == 4  # the verdict line's citation is not a finding


def _packaged() -> dict:
    return yaml.safe_load(resources.files("taosr1_verl.data.synth").joinpath("teacher_errors.yaml").read_text())


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.pop("hallucination"), "hallucination: missing section"),
        (lambda d: d["rule_misses"]["negation"].pop("non-"), r"rule_misses.negation: expected a rate for each"),
        (lambda d: d["rule_misses"]["price_limit"].update(max=1.5), r"rule_misses.price_limit.max: expected a rate"),
        (lambda d: d.update(misread_attribute="often"), "misread_attribute: expected a rate"),
        (lambda d: d["hallucination"].update(R09=0.1), "hallucination: expected a rate for each rule"),
        (lambda d: d.update(extra=1), r"unknown key\(s\) \['extra'\]"),
    ],
)
def test_bad_error_files_name_the_file_and_key(mutate, match):
    data = _packaged()
    mutate(data)
    with pytest.raises(ValueError, match=match) as e:
        parse_teacher_errors(data, "my_errors.yaml")
    assert str(e.value).startswith("my_errors.yaml: ")


def test_teacher_for_reads_a_users_file(tmp_path):
    data = _packaged()
    data["rates"] = {}
    data["misread_attribute"] = 1.0
    path = tmp_path / "errors.yaml"
    path.write_text(yaml.safe_dump(data))
    t = teacher_for(path)
    assert t.errors.misread_attribute == 1.0
    p = next(p for p in generate_synthetic(400, seed=2) if p.spec.required and p.query_kind == "attribute")
    assert "misread_attribute" in t.answer(p).errors
