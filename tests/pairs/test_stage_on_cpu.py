"""The pass@N stage on externally generated responses: readers, grading, files, report, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taosr1_verl.pairs.generate import Sample
from taosr1_verl.pairs.io import append_samples, read_difficulty, read_prompts, read_samples_done
from taosr1_verl.pairs.passk import pass_at_k_curve
from taosr1_verl.pairs.stage import run_pairs
from taosr1_verl.prompts import build_messages
from taosr1_verl.response import format_response

GOLD = ["4", "2", "1", "3"]


def rl_rows() -> list[dict]:
    items = [("oak table", "Oak table"), ("red sofa", "Blue sofa"), ("lamp", "Garden hose"), ("desk", "Desk, no drawers")]
    return [
        {
            "data_source": "synthetic",
            "prompt": build_messages(q, t),
            "ability": "relevance",
            "reward_model": {"style": "rule", "ground_truth": GOLD[i]},
            "extra_info": {"split": "train", "index": 10 + i, "pair_id": f"p{i}"},
        }
        for i, (q, t) in enumerate(items)
    ]


def ok(label: str, why: str = "r") -> str:
    return format_response(label, why)


# idx 10: mixed; 11: all wrong (teacher p1 right); 12: all right; 13: all wrong, no teacher
RESPONSES = {10: [ok("4"), ok("3"), "junk"], 11: [ok("1"), ok("3")], 12: [ok("1"), ok("1", "x")], 13: [ok("4"), ok("2")]}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rows = rl_rows()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rl.parquet")
    # verl main_generation_server layout: the input rows plus a `responses` list column.
    gen = [dict(r, responses=RESPONSES[r["extra_info"]["index"]]) for r in rows]
    pq.write_table(pa.Table.from_pylist(gen), tmp_path / "gen.parquet")
    with open(tmp_path / "resp.jsonl", "w") as f:
        for idx, rs in RESPONSES.items():
            for r in rs:  # one line per sample
                f.write(json.dumps({"index": idx, "response": r}) + "\n")
        f.write(json.dumps({"index": 99, "response": ok("4")}) + "\n")  # no such prompt
    (tmp_path / "teacher.jsonl").write_text(json.dumps({"pair_id": "p1", "response": ok("2", "teacher")}) + "\n")
    return {"rl": tmp_path / "rl.parquet", "gen": tmp_path / "gen.parquet", "jsonl": tmp_path / "resp.jsonl",
            "teacher": tmp_path / "teacher.jsonl", "dir": tmp_path}


@pytest.mark.parametrize("source", ["gen", "jsonl"])
def test_external_responses_end_to_end(files: dict[str, Path], source: str) -> None:
    out = files["dir"] / f"out_{source}"
    res = run_pairs(files[source], out, prompts_path=files["rl"], teacher=files["teacher"], jsonl=True)
    rep = json.loads((out / "report.json").read_text())
    assert rep["outcomes"] == {
        "paired_self": 1, "paired_teacher": 1, "skipped_all_correct": 1, "skipped_no_teacher": 1,
        "skipped_teacher_wrong": 0, "skipped_no_samples": 0,
    }
    assert rep["skipped_indices"] == {"skipped_all_correct": [12], "skipped_no_teacher": [13]}
    assert rep["samples"] == 9 and rep["malformed_samples"] == 1
    assert len(rep["dropped_responses"]) == (1 if source == "jsonl" else 0)
    # Pairs file: TRL conversational layout, readable by datasets.
    from datasets import Dataset

    ds = Dataset.from_parquet(str(out / "pairs.parquet"))
    assert ds.num_rows == len(res.pairs) == 2
    row = ds[0]
    assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert {r["chosen_source"] for r in ds} == {"self", "teacher"}
    assert len((out / "pairs.jsonl").read_text().splitlines()) == 2
    # Difficulty file keyed by extra_info.index.
    diff = read_difficulty(out / "difficulty.parquet")
    assert sorted(diff) == [10, 11, 12, 13]
    assert (diff[10]["n"], diff[10]["correct"]) == (3, 1)
    assert diff[10]["pass_at_k"] == pytest.approx(pass_at_k_curve(3, 1))
    assert diff[12]["pass_rate"] == 1.0 and diff[13]["pass_rate"] == 0.0
    assert (out / "pass_at_k.png").read_bytes()[:4] == b"\x89PNG"
    assert "| paired_teacher | 1 |" in (out / "report.md").read_text()


def test_prompt_without_responses_is_accounted(files: dict[str, Path], tmp_path: Path) -> None:
    p = tmp_path / "few.jsonl"
    p.write_text(json.dumps({"index": 10, "responses": RESPONSES[10]}) + "\n")
    res = run_pairs(p, tmp_path / "o", prompts_path=files["rl"])
    assert res.report["outcomes"]["skipped_no_samples"] == 3
    assert res.report["prompts"] == sum(res.report["outcomes"].values()) == 4


def test_teacher_response_stored_in_the_rl_row_is_used(files: dict[str, Path], tmp_path: Path) -> None:
    rows = rl_rows()
    rows[3]["extra_info"]["teacher_response"] = ok("3", "stored")  # prompt 13: all samples wrong
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    res = run_pairs(files["jsonl"], tmp_path / "o", prompts_path=tmp_path / "t.parquet", teacher=files["teacher"])
    assert res.report["outcomes"]["paired_teacher"] == 2
    (p13,) = [p for p in res.pairs if p["index"] == 13]
    assert p13["chosen"][0]["content"] == ok("3", "stored")


def test_bad_prompt_rows_name_file_row_and_field(tmp_path: Path) -> None:
    rows = rl_rows()
    del rows[2]["reward_model"]["ground_truth"]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad.parquet row 2: missing field 'reward_model.ground_truth'"):
        read_prompts(tmp_path / "bad.parquet")
    rows = rl_rows()
    rows[3]["extra_info"]["index"] = 10
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "dup.parquet")
    with pytest.raises(ValueError, match=r"row 3: extra_info.index 10 already used by row 0"):
        read_prompts(tmp_path / "dup.parquet")


def test_unknown_gold_label_is_an_error_naming_the_prompt(files: dict[str, Path], tmp_path: Path) -> None:
    rows = rl_rows()
    rows[1]["reward_model"]["ground_truth"] = "7"
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "g.parquet")
    with pytest.raises(ValueError, match="prompt index 11"):
        run_pairs(files["jsonl"], tmp_path / "o", prompts_path=tmp_path / "g.parquet")


def test_bad_response_lines(tmp_path: Path, files: dict[str, Path]) -> None:
    p = tmp_path / "r.jsonl"
    p.write_text('{"index": 10, "response": "x"}\n{"response": "y"}\n')
    with pytest.raises(ValueError, match=r"r.jsonl:2: missing field 'index'"):
        run_pairs(p, tmp_path / "o", prompts_path=files["rl"])
    p.write_text('{"index": 10, "response": "x"}\nnot json\n')
    with pytest.raises(ValueError, match=r"r.jsonl:2: not valid JSON"):
        run_pairs(p, tmp_path / "o", prompts_path=files["rl"])
    with pytest.raises(ValueError, match="needs the prompts parquet"):
        run_pairs(files["jsonl"], tmp_path / "o")


def test_samples_file_resumes_after_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    append_samples(path, [1, 2], [[Sample("a", 3)], [Sample("b", 4)]])
    with open(path, "a") as f:
        f.write('{"index": 3, "respon')  # killed mid-write
    done = read_samples_done(path)
    assert done.responses == {1: ["a"], 2: ["b"]} and done.n_tokens[2] == [4]
    append_samples(path, [3], [[Sample("c", 1)]])
    assert read_samples_done(path).responses == {1: ["a"], 2: ["b"], 3: ["c"]}


def test_repeated_response_lines_for_a_prompt_are_reported_not_merged(files: dict[str, Path], tmp_path: Path) -> None:
    p = tmp_path / "dup.jsonl"
    with open(p, "w") as f:
        for _ in range(3):  # the same prompt's three responses, given three times
            f.write(json.dumps({"index": 10, "responses": RESPONSES[10]}) + "\n")
        f.write(json.dumps({"index": 11, "response": ok("1")}) + "\n")
        f.write(json.dumps({"index": 11, "response": ok("2")}) + "\n")  # per-sample lines: one prompt, two samples
    res = run_pairs(p, tmp_path / "o", prompts_path=files["rl"])
    diff = read_difficulty(tmp_path / "o" / "difficulty.parquet")
    assert (diff[10]["n"], diff[11]["n"]) == (3, 2)
    dropped = res.report["dropped_responses"]
    assert [(d["index"], d["line"]) for d in dropped] == [(10, 2), (10, 3)]
    assert all("line 1 already gave this prompt's responses" in d["reason"] for d in dropped)


def _tree(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and p.name != "manifest.json"}


def test_pairs_rerun_does_nothing_until_an_input_or_option_changes(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o"
    first = run_pairs(files["jsonl"], out, prompts_path=files["rl"], teacher=files["teacher"], jsonl=True)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_pairs(files["jsonl"], out, prompts_path=files["rl"], teacher=files["teacher"], jsonl=True)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert again.report == first.report and len(again.pairs) == len(first.pairs) and again.out_dir == out
    # without --jsonl: the old pairs.jsonl must not stay beside the new files
    run_pairs(files["jsonl"], out, prompts_path=files["rl"], teacher=files["teacher"])
    assert not (out / "pairs.jsonl").exists()
    with open(files["jsonl"], "a") as f:
        f.write(json.dumps({"index": 13, "response": ok("3")}) + "\n")  # prompt 13 gets a right answer
    res = run_pairs(files["jsonl"], out, prompts_path=files["rl"], teacher=files["teacher"])
    assert res.report["outcomes"]["skipped_no_teacher"] == 0


def test_pairs_killed_at_any_file_step_never_leaves_a_complete_looking_mix(files: dict[str, Path], tmp_path: Path):
    import multiprocessing
    import os
    import signal

    from taosr1_verl.pairs.rule import PairConfig

    def run(out, chosen, kill_at=None):
        def child():
            if kill_at:
                os.environ["TAOSR1_KILL_AT_FILE_STEP"] = str(kill_at)
            run_pairs(files["jsonl"], out, prompts_path=files["rl"], teacher=files["teacher"], jsonl=chosen == "first",
                      pairing=PairConfig(chosen=chosen))
            os._exit(0)

        proc = multiprocessing.get_context("fork").Process(target=child)
        proc.start()
        proc.join(60)
        return proc.exitcode

    refs = {}
    for chosen in ("shortest", "first"):
        assert run(tmp_path / chosen, chosen) == 0
        refs[chosen] = _tree(tmp_path / chosen)
    out = tmp_path / "out"
    step, code = 0, None
    while code != 0:
        step += 1
        assert run(out, "shortest") == 0 and _tree(out) == refs["shortest"]
        code = run(out, "first", kill_at=step)
        assert code in (0, -signal.SIGKILL)
        m = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
        if m.get("complete"):
            assert _tree(out) == refs[m["options"]["pairing"]["chosen"]], f"step {step}"
    assert step > 5 and _tree(out) == refs["first"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
