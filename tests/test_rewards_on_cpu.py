from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taosr1_verl.rewards import (
    REWARD_KEYS,
    RewardConfig,
    compute_score,
    get_scorer,
    make_trl_reward,
    score_batch,
)

OK4 = "4\n<think>\nexact match\n</think>"
OK3 = "3\n<think>\nclose\n</think>"
OK1 = "1\n<think>\nunrelated\n</think>"


def test_defaults_correct_wrong_malformed():
    assert compute_score("s", OK4, "4") == {"score": 1.0, "acc": 1, "format_ok": 1, "pred": 4, "gold": 4,
                                            "false_positive": 0}
    assert compute_score("s", OK3, "4")["score"] == 0.0
    bad = compute_score("s", "4 because", 4)
    assert bad == {"score": -1.0, "acc": 0, "format_ok": 0, "pred": 0, "gold": 4, "false_positive": 0}


def test_positional_call_like_main_eval():
    assert compute_score("synthetic", OK4, "4", None)["acc"] == 1


@pytest.mark.parametrize("gt", ["4", 4, np.int64(4), "Excellent", 4.0])
def test_ground_truth_spellings(gt):
    assert compute_score("s", OK4, gt)["acc"] == 1


@pytest.mark.parametrize("gt", ["5", 0, "Excelent", None, True, "", "４"])
def test_unknown_ground_truth_raises_naming_value(gt):
    with pytest.raises(ValueError, match="ground truth|unknown label"):
        compute_score("s", OK4, gt)


def test_options_malformed_penalty_partial_credit_false_positive():
    assert compute_score("s", "nope", "4", malformed_penalty=-0.2)["score"] == -0.2
    # Ordinal partial credit: off by one of a span of three levels.
    assert compute_score("s", OK3, "4", partial_credit=True)["score"] == pytest.approx(2 / 3)
    assert compute_score("s", OK1, "4", partial_credit=True)["score"] == pytest.approx(0.0)
    fp = compute_score("s", OK4, "2", false_positive_penalty=0.5)
    assert fp["false_positive"] == 1 and fp["score"] == -0.5
    # Related predicted for a Mismatch item is also a Good-tier false positive; Mid for Bad is not.
    assert compute_score("s", OK3, "2")["false_positive"] == 1
    assert compute_score("s", "2\n<think>x</think>", "1")["false_positive"] == 0


def test_pre_cot_and_schema_options():
    assert compute_score("s", "<think>ok</think>\n4", "4", format="pre_cot")["score"] == 1.0
    assert compute_score("s", OK4, "4", format="pre_cot")["format_ok"] == 0
    assert compute_score("s", "3\n<think>x</think>", "Exact", schema="wands")["acc"] == 1


def test_verl_passthrough_keywords_are_ignored_and_bad_options_rejected():
    out = compute_score("s", OK4, "4", extra_info={"index": 3}, reward_router_address=None, tokenizer=None)
    assert out["score"] == 1.0
    with pytest.raises(ValueError, match="unknown TaoSR1 reward option"):
        compute_score("s", OK4, "4", bogus=1)
    with pytest.raises(ValueError, match="format"):
        RewardConfig(format="cot")
    with pytest.raises(ValueError, match="unknown label schema"):
        get_scorer(schema="nope")


def test_scorers_are_cached_per_options_however_many_sets_were_seen():
    # One cache, bounded and least-recently-used (a dict here once stopped caching after 256 option sets).
    for i in range(300):
        assert compute_score("s", "3\n<think>x</think>", "3", wrong_reward=-i / 1000)["score"] == 1.0
    assert get_scorer(format="pre_cot", tokenizer=None) is get_scorer(format="pre_cot", tokenizer=None)
    assert get_scorer(format="pre_cot") is not get_scorer(format="post_cot")
    unhashable = compute_score("s", OK4, "4", tokenizer=[])  # verl's keyword, a list: scored uncached
    assert unhashable["score"] == 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"malformed_penalty": "abc"}, "malformed_penalty must be a number, got 'abc'"),
        ({"correct_reward": [1]}, "correct_reward must be a number"),
        ({"wrong_reward": True}, "wrong_reward must be a number"),
        ({"malformed_penalty": float("nan")}, "malformed_penalty must be a finite number"),
        ({"false_positive_penalty": "inf"}, "false_positive_penalty must be a finite number"),
        ({"partial_credit": "sometimes"}, "partial_credit must be true or false"),
        ({"format": 1}, r"format must be one of \['post_cot', 'pre_cot'\], got 1"),
        ({"schema": None}, "schema must be a string"),
        ({"malformed_penalty": 0.5}, "not subtracted"),
        ({"correct_reward": 0.0}, "correct_reward .* must be greater than wrong_reward"),
    ],
)
def test_bad_option_values_are_refused_by_name(options, message):
    """An option of the wrong type once became the score itself (malformed_penalty='abc' scored 'abc')."""
    with pytest.raises(ValueError, match=message):
        compute_score("s", "malformed", "4", **options)


def test_option_values_from_yaml_or_the_command_line_are_coerced():
    cfg = RewardConfig(malformed_penalty="-0.5", correct_reward=2, partial_credit="true")
    assert (cfg.malformed_penalty, cfg.correct_reward, cfg.partial_credit) == (-0.5, 2.0, True)
    assert RewardConfig(partial_credit=0).partial_credit is False
    out = compute_score("s", "malformed", "4", malformed_penalty="-0.5")
    assert out["score"] == -0.5 and isinstance(out["score"], float)


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=True),
                       st.text(max_size=8), st.lists(st.integers(), max_size=2)))
def test_any_malformed_penalty_is_refused_or_scores_a_number(value):
    try:
        out = compute_score("s", "no label here", "4", malformed_penalty=value)
    except ValueError:
        return
    assert type(out["score"]) is float and np.isfinite(out["score"]) and out["score"] <= 0.0


def test_score_batch_and_trl_adapter():
    outs = score_batch([OK4, OK3, "x"], ["4", "4", "4"])
    assert [o["score"] for o in outs] == [1.0, 0.0, -1.0]
    reward = make_trl_reward(malformed_penalty=-0.5)
    conversational = [[{"role": "assistant", "content": OK4}], [{"role": "assistant", "content": "?"}]]
    assert reward(prompts=["p", "p"], completions=conversational, ground_truth=["4", "4"]) == [1.0, -0.5]
    assert reward(prompts=["p"], completions=[OK3], reward_model=[{"ground_truth": "3"}]) == [1.0]
    with pytest.raises(KeyError, match="ground_truth"):
        reward(prompts=["p"], completions=[OK3])


response_text = st.one_of(
    st.text(max_size=200),
    st.builds(lambda lab, r, tail: f"{lab}\n<think>{r}</think>{tail}",
              st.sampled_from(["4", "3", "2", "1", "5", "４", " 4", "4 "]), st.text(max_size=50),
              st.sampled_from(["", "\n", " x"])),
    st.none(), st.integers(), st.binary(max_size=20),
)


@settings(max_examples=400)
@given(response_text, st.sampled_from(["4", "3", "2", "1", 4, 3, 2, 1]),
       st.sampled_from([{}, {"partial_credit": True}, {"false_positive_penalty": 0.5}, {"format": "pre_cot"}]))
def test_reward_properties(text, gold, opts):
    out = compute_score("s", text, gold, **opts)
    assert tuple(out) == REWARD_KEYS
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in out.values())
    allowed = {1.0, 0.0, -1.0, -0.5}
    if opts.get("partial_credit"):
        assert -1.0 <= out["score"] <= 1.0
    else:
        assert out["score"] in allowed
    assert out["acc"] in (0, 1) and out["format_ok"] in (0, 1) and out["false_positive"] in (0, 1)
    assert out["acc"] == int(out["pred"] == out["gold"])
    assert (out["format_ok"] == 0) == (out["pred"] == 0)
    if out["format_ok"] == 0:
        assert out["score"] == -1.0
