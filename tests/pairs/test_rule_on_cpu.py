"""The pair rule and its outcome accounting (unit + hypothesis property tests)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taosr1_verl.pairs.rule import OUTCOMES, PairConfig, PromptGroup, build_pairs, decide
from taosr1_verl.prompts import build_messages
from taosr1_verl.response import format_response
from taosr1_verl.rewards import get_scorer, score_batch

PROMPT = build_messages("red oak table", "Oak dining table, red", {"colour": "red"})
GRADE = get_scorer()


def ok(label: str, why: str = "reason") -> str:
    return format_response(label, why)


def group(index: int, gold: str, responses: list[str], teacher: str | None = None) -> PromptGroup:
    return PromptGroup(index, PROMPT, gold, responses, score_batch(responses, [gold] * len(responses)), teacher)


def test_mixed_prompt_pairs_own_correct_with_own_wrong() -> None:
    d = decide(group(1, "4", [ok("3"), ok("4", "long reasoning here"), ok("4", "short"), "garbage"]))
    assert d.outcome == "paired_self"
    (p,) = d.pairs
    assert p["prompt"] == PROMPT
    assert p["chosen"] == [{"role": "assistant", "content": ok("4", "short")}]  # shortest correct
    assert p["rejected"] == [{"role": "assistant", "content": ok("3")}]  # well-formed wrong before malformed
    assert (p["chosen_source"], p["gold"], p["rejected_pred"], p["n"], p["correct"]) == ("self", 4, 3, 4, 2)


def test_confident_wrong_is_the_most_frequent_mistake() -> None:
    d = decide(group(1, "4", [ok("4"), ok("1"), ok("2", "a"), ok("2", "b")]))
    assert d.pairs[0]["rejected_pred"] == 2
    d = decide(group(1, "4", [ok("4"), ok("1"), ok("2", "a"), ok("2", "b")]), PairConfig(rejected="farthest"))
    assert d.pairs[0]["rejected_pred"] == 1


def test_malformed_policy_prefers_format_errors() -> None:
    d = decide(group(1, "4", [ok("4"), ok("2"), "4 because it fits"]), PairConfig(rejected="malformed"))
    assert d.pairs[0]["rejected"][0]["content"] == "4 because it fits"
    assert d.pairs[0]["rejected_format_ok"] == 0


def test_none_right_uses_a_correct_teacher_answer() -> None:
    d = decide(group(2, "3", [ok("1"), ok("2")], teacher=ok("3", "teacher")), grade=GRADE)
    assert d.outcome == "paired_teacher"
    assert d.pairs[0]["chosen"][0]["content"] == ok("3", "teacher")
    assert d.pairs[0]["chosen_source"] == "teacher"


def test_none_right_without_teacher_or_with_a_wrong_teacher_is_skipped() -> None:
    assert decide(group(2, "3", [ok("1")])).outcome == "skipped_no_teacher"
    assert decide(group(2, "3", [ok("1")], teacher=ok("1", "t")), grade=GRADE).outcome == "skipped_teacher_wrong"
    assert decide(group(2, "3", [ok("1")], teacher=ok("3")), PairConfig(use_teacher=False)).outcome == "skipped_no_teacher"


def test_all_right_and_no_samples() -> None:
    assert decide(group(3, "2", [ok("2"), ok("2", "b")])).outcome == "skipped_all_correct"
    assert decide(group(4, "2", [])).outcome == "skipped_no_samples"


def test_pairs_per_prompt_are_distinct_and_best_first() -> None:
    rs = [ok("4", "a"), ok("4", "bb"), ok("1"), ok("2"), ok("2")]  # the two ok("2") collapse into one
    d = decide(group(5, "4", rs), PairConfig(pairs_per_prompt=10))
    combos = [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in d.pairs]
    assert len(combos) == len(set(combos)) == 4  # 2 distinct correct x 2 distinct wrong
    assert combos[0] == (ok("4", "a"), ok("2"))


def test_random_policy_is_seeded_per_prompt() -> None:
    rs = [ok("4", str(i)) for i in range(6)] + [ok("1", str(i)) for i in range(6)]
    cfg = PairConfig(chosen="random", rejected="random", seed=3)
    a = decide(group(9, "4", rs), cfg).pairs
    assert a == decide(group(9, "4", rs), cfg).pairs
    picks = {decide(group(9, "4", rs), PairConfig(chosen="random", seed=s)).pairs[0]["chosen"][0]["content"] for s in range(20)}
    assert len(picks) > 1


def test_duplicate_index_and_bad_config_are_errors() -> None:
    with pytest.raises(ValueError, match="index 1 appears twice"):
        build_pairs([group(1, "4", [ok("4")]), group(1, "4", [ok("4")])])
    with pytest.raises(ValueError, match="chosen"):
        PairConfig(chosen="best")
    with pytest.raises(ValueError, match="pairs_per_prompt"):
        PairConfig(pairs_per_prompt=0)


LABELS = ["1", "2", "3", "4"]
response = st.one_of(
    st.builds(ok, st.sampled_from(LABELS), st.text(st.characters(codec="utf-8", exclude_characters="<>"), min_size=1, max_size=8).filter(str.strip)),
    st.text(max_size=12),
)
prompt_case = st.tuples(st.sampled_from(LABELS), st.lists(response, max_size=6), st.one_of(st.none(), response))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(prompt_case, max_size=12),
    st.sampled_from(["shortest", "longest", "first", "random"]),
    st.sampled_from(["confident", "farthest", "malformed", "first", "random"]),
    st.integers(1, 4),
)
def test_every_prompt_has_exactly_one_outcome_and_pairs_obey_the_rule(cases, chosen, rejected, k) -> None:
    groups = [group(i, gold, rs, teacher) for i, (gold, rs, teacher) in enumerate(cases)]
    pairs, rep = build_pairs(groups, PairConfig(chosen=chosen, rejected=rejected, pairs_per_prompt=k), GRADE)
    assert rep.prompts == len(groups) == sum(rep.outcomes.values())
    assert set(rep.outcomes) <= set(OUTCOMES)
    assert rep.pairs == len(pairs)
    for g in groups:
        c, n = g.correct, g.n
        mine = [p for p in pairs if p["index"] == g.index]
        expected = (
            "skipped_no_samples" if n == 0 else
            "skipped_all_correct" if c == n else
            "paired_self" if c > 0 else
            "skipped_no_teacher" if not (g.teacher and g.teacher.strip()) else
            "paired_teacher" if GRADE(g.teacher, g.ground_truth)["acc"] else
            "skipped_teacher_wrong"
        )
        assert (g.index in rep.skipped_indices.get(expected, [])) or expected.startswith("paired")
        assert bool(mine) == expected.startswith("paired")
        assert len(mine) <= k
        for p in mine:
            # chosen always grades correct, rejected always grades wrong, under the same reward
            assert GRADE(p["chosen"][0]["content"], g.ground_truth)["acc"] == 1
            assert GRADE(p["rejected"][0]["content"], g.ground_truth)["acc"] == 0
            assert p["rejected"][0]["content"] in g.responses
            if expected == "paired_self":
                assert p["chosen"][0]["content"] in g.responses
        assert len({(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in mine}) == len(mine)
