"""HF backend on a tiny offline Qwen2: shared-prefix KV reuse equals the plain forward; input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taosr1_verl.prompts import build_messages
from taosr1_verl.schema import LabelLevel, make_schema
from taosr1_verl.scoring.base import common_prefix_len
from taosr1_verl.scoring.demo import DEMO_QUERIES, demo_items
from taosr1_verl.scoring.hf import HFScorer


@pytest.fixture(scope="module")
def scorer(tiny_model):
    return HFScorer(tiny_model, schema="taosr1", batch_size=7)


def _reference(scorer: HFScorer, ids: list[int]) -> np.ndarray:
    """Unbatched, unpadded forward of one full prompt: the ground truth every fast path must match."""
    with torch.inference_mode():
        logits = scorer.model(input_ids=torch.tensor([ids])).logits[0, -1]
    return torch.softmax(logits[scorer.label_ids].double(), -1).numpy()


def test_prefix_reuse_matches_plain_forward(scorer):
    items = demo_items(17)  # 17 items, batch 7: three chunks, the last one short
    msgs = [build_messages(DEMO_QUERIES[1], it["title"], it["attributes"]) for it in items]
    ids = scorer.render(msgs)
    assert common_prefix_len(ids) > 100  # system prompt + query line are shared
    fast = scorer.score_ids(ids)
    scorer.reuse_prefix = False
    try:
        plain = scorer.score_ids(ids)
    finally:
        scorer.reuse_prefix = True
    ref = np.stack([_reference(scorer, s) for s in ids])
    np.testing.assert_allclose(fast, ref, atol=1e-5)
    np.testing.assert_allclose(plain, ref, atol=1e-5)
    np.testing.assert_allclose(fast.sum(1), 1.0, atol=1e-9)
    # The model's answer depends on the item: rows differ (a backend reading a fixed position would not).
    assert np.ptp(fast[:, 0]) > 0.02


def test_groups_keep_row_order(scorer):
    rows, groups = [], []
    for q in DEMO_QUERIES[:3]:
        for it in demo_items(4, seed=len(q)):
            rows.append(build_messages(q, it["title"], it["attributes"]))
            groups.append(q)
    # interleave the groups: output must still follow input order
    order = [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    ids = scorer.render([rows[i] for i in order])
    got = scorer.score_ids(ids, groups=[groups[i] for i in order])
    ref = np.stack([_reference(scorer, s) for s in ids])
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_score_items_and_bad_input(scorer, tiny_model):
    probs = scorer.score_items("oak table", [{"title": "Oak dining table", "attributes": {"colour": "red"}}])
    assert probs.shape == (1, 4)
    with pytest.raises(ValueError, match="item 1: item title must be a non-empty"):
        scorer.score_items("oak table", [{"title": "ok"}, {"title": "  "}])
    with pytest.raises(ValueError, match="row 0: empty prompt"):
        scorer.score_ids([[]])
    short = HFScorer(scorer.model, scorer.tokenizer, max_prompt_tokens=50)
    with pytest.raises(ValueError, match="row 0: prompt has .* tokens, more than the model's 50"):
        short.score_items("oak table", [{"title": "Oak dining table"}])
    # A schema whose label strings are words: not one token of this tokenizer.
    wordy = make_schema("wordy", [LabelLevel(2, "Good", "Excellent", "Good"), LabelLevel(1, "Bad", "Irrelevant", "Bad")])
    with pytest.raises(ValueError, match="every label must be exactly one token"):
        HFScorer(scorer.model, scorer.tokenizer, schema=wordy)
