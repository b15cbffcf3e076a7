"""Teacher cache: built from any scorer or a table, resumable, validated."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from taosr1_verl.autofas.teacher import (
    build_teacher_cache,
    gold_soft_teacher,
    load_teacher_cache,
    prob_columns,
)
from taosr1_verl.data.synth import generate_synthetic
from taosr1_verl.schema import TAOSR1


def test_cache_resumes_without_rescoring(tmp_path) -> None:
    pairs = generate_synthetic(40, seed=3)
    calls: list[int] = []
    base = gold_soft_teacher("taosr1", seed=1)

    def counting(ps):
        calls.append(len(ps))
        return base(ps)

    path = tmp_path / "t.parquet"
    first = build_teacher_cache(pairs[:25], path, scorer=counting, teacher="g", chunk_size=10)
    assert sum(calls) == 25
    calls.clear()
    full = build_teacher_cache(pairs, path, scorer=counting, teacher="g", chunk_size=10)
    assert sum(calls) == 15  # only the new pairs
    np.testing.assert_allclose(full.probs[:25], first.probs)
    assert full.pair_ids == [p.pair_id for p in pairs]
    cols = pq.read_table(path).column_names
    assert set(prob_columns(TAOSR1)) <= set(cols) and {"expected", "tier", "teacher_level"} <= set(cols)


def test_gold_soft_teacher_ranks_by_gold_and_is_order_free(tmp_path) -> None:
    pairs = generate_synthetic(200, seed=0)
    t = gold_soft_teacher("taosr1", seed=0)
    probs = t(pairs)
    np.testing.assert_allclose(t(pairs[::-1])[::-1], probs)
    expected = probs @ np.array(TAOSR1.level_values)
    gold = np.array([p.level for p in pairs])
    assert np.corrcoef(expected, gold)[0, 1] > 0.8


def test_probability_table_and_bad_rows(tmp_path) -> None:
    pairs = generate_synthetic(8, seed=0)
    good = {p.pair_id: [0.1, 0.2, 0.3, 0.4] for p in pairs}
    table = build_teacher_cache(pairs, tmp_path / "a.parquet", probs_table=good, teacher="tab")
    assert set(table.tiers) == {"Mid"}  # CumPT at 0.5: P4+P3 = 0.3, +P2 = 0.6
    bad = dict(good)
    bad[pairs[3].pair_id] = [0.9, 0.9, 0.0, 0.0]
    with pytest.raises(ValueError, match=pairs[3].pair_id):
        build_teacher_cache(pairs, tmp_path / "b.parquet", probs_table=bad, teacher="tab")
    with pytest.raises(ValueError, match="no row for pair_id"):
        build_teacher_cache(pairs, tmp_path / "c.parquet", probs_table={}, teacher="tab")
    with pytest.raises(FileNotFoundError):
        load_teacher_cache(tmp_path / "missing.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="junk.parquet"):
        load_teacher_cache(tmp_path / "junk.parquet")


def test_hf_teacher_scores_each_pair_as_its_own_prompt_whatever_the_query_order(tiny_model_dir) -> None:
    """The HF teacher groups pairs by query to share the KV prefix; rows must land where their pair was."""
    from taosr1_verl.autofas.teacher import hf_teacher
    from taosr1_verl.scoring.hf import HFScorer

    pairs = generate_synthetic(12, seed=5)
    rng = np.random.default_rng(0)
    shuffled = [pairs[i] for i in rng.permutation(len(pairs))]  # queries interleaved, not contiguous
    assert len({p.query for p in shuffled}) > 1
    probs = hf_teacher(tiny_model_dir, "taosr1", batch_size=4)(shuffled)
    assert probs.shape == (12, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    alone = HFScorer(tiny_model_dir, schema="taosr1", batch_size=1)
    try:
        for row, p in zip(probs, shuffled, strict=True):
            item = {"title": p.title, "attributes": p.attributes, "description": p.description}
            np.testing.assert_allclose(row, alone.score_items(p.query, [item])[0], atol=1e-4)
    finally:
        alone.close()
