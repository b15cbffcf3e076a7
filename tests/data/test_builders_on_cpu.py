"""RL / SFT / eval parquet builders: layouts, balancing, teacher validation, and loading through verl."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taosr1_verl.data import (
    BuildConfig,
    balance_classes,
    class_cv,
    generate_synthetic,
    iter_pairs_parquet,
    read_teacher_jsonl,
    rule_teacher,
    write_eval_parquet,
    write_pairs_parquet,
    write_rl_parquet,
    write_sft_parquet,
    write_teacher_jsonl,
)
from taosr1_verl.prompts import PromptConfig
from taosr1_verl.rewards import compute_score

COMPACT = BuildConfig(prompt=PromptConfig(instructions="compact"))


@pytest.fixture(scope="module")
def pairs():
    return generate_synthetic(1200, seed=11)


def test_rl_layout_and_balance(tmp_path, pairs):
    path = tmp_path / "rl.parquet"
    rep = write_rl_parquet(pairs, path, config=COMPACT, seed=3)
    rows = pq.read_table(path).to_pylist()
    assert len(rows) == rep.n_out
    counts = Counter(r["extra_info"]["level"] for r in rows)
    assert len(set(counts.values())) == 1 and set(counts) == {1, 2, 3, 4}
    assert rep.cv_out == 0.0 and rep.cv_in > 0.5
    assert rep.counts_in == dict(Counter(p.level for p in pairs))
    assert rep.dropped == {"balance": rep.n_in - rep.n_out}
    r = rows[0]
    assert r["data_source"] == "taosr1_synthetic" and r["ability"] == "relevance"
    assert [m["role"] for m in r["prompt"]] == ["system", "user"]
    assert r["reward_model"] == {"style": "rule", "ground_truth": str(r["extra_info"]["level"])}
    by_id = {p.pair_id: p for p in pairs}
    for row in rows:
        p = by_id[row["extra_info"]["pair_id"]]
        assert row["extra_info"]["index"] == p.index and row["extra_info"]["query"] == p.query
        assert json.loads(row["extra_info"]["attributes"]) == p.attributes
    assert len({row["extra_info"]["index"] for row in rows}) == len(rows)
    # Same seed: the same subset; another seed: another one.
    write_rl_parquet(pairs, tmp_path / "again.parquet", config=COMPACT, seed=3)
    assert pq.read_table(tmp_path / "again.parquet").equals(pq.read_table(path))
    write_rl_parquet(pairs, tmp_path / "other.parquet", config=COMPACT, seed=4)
    assert not pq.read_table(tmp_path / "other.parquet").equals(pq.read_table(path))


def test_rl_streaming_balance_with_counts_matches_in_memory(tmp_path, pairs):
    counts = Counter(p.level for p in pairs)
    write_rl_parquet(iter(pairs), tmp_path / "a.parquet", counts=counts, seed=1)
    write_rl_parquet(pairs, tmp_path / "b.parquet", seed=1)
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))
    with pytest.raises(ValueError, match="more rows than"):
        write_rl_parquet(iter(pairs), tmp_path / "c.parquet", counts={k: v - 1 for k, v in counts.items()})
    assert not (tmp_path / "c.parquet").exists()


def test_eval_keeps_every_pair_and_teacher_response(tmp_path, pairs):
    rep = write_eval_parquet(pairs, tmp_path / "eval.parquet", teacher=rule_teacher)
    rows = pq.read_table(tmp_path / "eval.parquet").to_pylist()
    assert rep.n_out == rep.n_in == len(pairs) == len(rows) and not rep.balanced
    assert {r["extra_info"]["split"] for r in rows} == {"test"}
    for r in rows[:100]:
        assert compute_score(r["data_source"], r["extra_info"]["teacher_response"],
                             r["reward_model"]["ground_truth"])["score"] == 1.0


@settings(max_examples=60, deadline=None)
@given(levels=st.lists(st.sampled_from([1, 2, 3, 4]), max_size=200), seed=st.integers(0, 1000),
       cap=st.none() | st.integers(1, 30))
def test_balance_classes_property(levels, seed, cap):
    keep = balance_classes(levels, seed=seed, per_class=cap)
    assert keep == sorted(set(keep))
    counts = Counter(levels[i] for i in keep)
    if levels:
        m = min(Counter(levels).values())
        m = m if cap is None else min(m, cap)
        assert counts == {lv: m for lv in set(levels)}
        assert class_cv(counts) == 0.0
    assert keep == balance_classes(levels, seed=seed, per_class=cap)


def test_class_cv_values():
    assert class_cv({1: 10, 2: 10}) == 0.0
    assert class_cv({1: 10, 2: 0}) == pytest.approx(1.0)
    assert class_cv({1: 10}, levels=[1, 2]) == pytest.approx(1.0)


def test_sft_reports_missing_malformed_and_wrong_teacher_answers(tmp_path, pairs):
    sub = pairs[:40]
    teacher = {p.pair_id: rule_teacher(p) for p in sub}
    teacher.pop(sub[0].pair_id)
    teacher[sub[1].pair_id] = "the answer is 4"
    wrong = sub[2]
    bad_label = str(1 if wrong.level != 1 else 4)
    teacher[wrong.pair_id] = f"{bad_label}\n<think>\nmade up\n</think>"
    path = tmp_path / "teacher.jsonl"
    path.write_text("".join(json.dumps({"pair_id": k, "response": v}) + "\n" for k, v in teacher.items()))
    rep = write_sft_parquet(sub, tmp_path / "sft.parquet", read_teacher_jsonl(path))
    assert rep.n_in == 40 and rep.n_out == 37
    assert rep.dropped == {"teacher_missing": 1, "teacher_malformed:no_label": 1, "teacher_wrong_label": 1}
    assert {p["pair_id"] for p in rep.problems} == {sub[0].pair_id, sub[1].pair_id, wrong.pair_id}
    rows = pq.read_table(tmp_path / "sft.parquet").to_pylist()
    assert len(rows) == 37
    for r in rows:
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
        assert r["messages"][2]["content"].split("\n", 1)[0] == str(r["extra_info"]["level"])


def test_teacher_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"pair_id": "a", "response": "x"}\n{"pair_id": "a", "response": "y"}\n')
    with pytest.raises(ValueError, match=r"t.jsonl:2: duplicate pair_id 'a'"):
        read_teacher_jsonl(path)
    path.write_text('{"pair_id": "a"}\n')
    with pytest.raises(ValueError, match=r"t.jsonl:1: field 'response'"):
        read_teacher_jsonl(path)
    path.write_text('{"pair_id": "a", "response": "x"\n')
    with pytest.raises(ValueError, match=r"t.jsonl:1: not valid JSON"):
        read_teacher_jsonl(path)


def test_pairs_parquet_round_trip_and_teacher_file(tmp_path, pairs):
    assert write_pairs_parquet(pairs, tmp_path / "pairs.parquet") == len(pairs)
    back = list(iter_pairs_parquet(tmp_path / "pairs.parquet", batch_size=100))
    assert back == pairs
    assert write_teacher_jsonl(back[:10], tmp_path / "t.jsonl", rule_teacher) == 10
    assert read_teacher_jsonl(tmp_path / "t.jsonl") == {p.pair_id: rule_teacher(p) for p in pairs[:10]}


@pytest.fixture(scope="module")
def tiny_tokenizer(pairs):
    from taosr1_verl.models.tiny import train_tokenizer

    corpus = [p.query + "\n" + p.title + "\n" + rule_teacher(p) for p in pairs[:300]]
    from taosr1_verl.prompts import system_prompt

    corpus.append(system_prompt(instructions="compact"))
    return train_tokenizer(corpus, vocab_size=400)


def test_rl_file_loads_through_verl_rlhfdataset(tmp_path, pairs, tiny_tokenizer):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    path = tmp_path / "rl.parquet"
    rep = write_rl_parquet(pairs[:400], path, config=COMPACT)
    cfg = OmegaConf.create({"max_prompt_length": 512, "filter_overlong_prompts": True,
                            "cache_dir": str(tmp_path / "cache"), "filter_overlong_prompts_workers": 1})
    ds = RLHFDataset(str(path), tiny_tokenizer, cfg)
    assert len(ds) == rep.n_out
    item = ds[0]
    row = pq.read_table(path).slice(0, 1).to_pylist()[0]
    assert item["index"] == row["extra_info"]["index"]
    assert item["reward_model"]["ground_truth"] == row["reward_model"]["ground_truth"]
    assert item["data_source"] == "taosr1_synthetic"


def test_sft_file_loads_through_verl_sft_dataset(tmp_path, pairs, tiny_tokenizer):
    from importlib import resources

    from omegaconf import OmegaConf
    from verl.trainer.sft_trainer import create_sft_dataset

    path = tmp_path / "sft.parquet"
    write_sft_parquet(pairs[:50], path, rule_teacher, config=COMPACT)
    # The `data` section of verl's own SFT trainer config, as the trainer passes it.
    shipped = resources.files("verl.trainer.config").joinpath("sft_trainer_engine.yaml").read_text()
    cfg = OmegaConf.create(shipped).data
    ds = create_sft_dataset([str(path)], cfg, tiny_tokenizer, None)
    assert type(ds).__name__ == "MultiTurnSFTDataset" and len(ds) == 50
    item = ds[0]
    ids, mask = item["input_ids"], item["loss_mask"]
    # Loss only on the assistant turn, which starts with the label token.
    target = tiny_tokenizer.decode(ids[mask.bool()])
    assert target.lstrip().startswith(str(pairs[0].level))
    assert "Verdict" in target and "Query:" not in target.split("<think>")[0]
