"""The ablation's data, its stronger-teacher fallback, its row chains and its table (no trainer started;
the runner end to end is the slow test_ablate_micro_on_cpu.py)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from taosr1_verl.cli import main
from taosr1_verl.data import generate_synthetic
from taosr1_verl.data.split import split_pairs
from taosr1_verl.data.synth.teacher_errors import ImperfectTeacher, load_teacher_errors
from taosr1_verl.pipeline import ablate
from taosr1_verl.pipeline.stages import RECORD, StageContext
from taosr1_verl.response import parse_response
from taosr1_verl.rewards import compute_score
from taosr1_verl.schema import TAOSR1

SMALL = replace(ablate.PROFILES["micro"].stages, n_pairs=1500)


def _settings(teacher: str | None = None, seed: int = 4) -> dict:
    prof = replace(ablate.PROFILES["micro"], stages=SMALL)
    return ablate.settings_for(prof, seed, ablate.teacher_setting(teacher))


def _data(tmp_path: Path, teacher: str | None = None, seed: int = 4) -> tuple[Path, dict]:
    out = tmp_path / "data"
    out.mkdir(parents=True)
    summary = ablate.stage_data(StageContext(tmp_path, _settings(teacher, seed)), out)
    (out / RECORD).write_text(json.dumps({"summary": summary}))
    return out, summary


def _assistant(path: Path) -> list[str]:
    return [r["messages"][-1]["content"] for r in pq.read_table(path, columns=["messages"]).to_pylist()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _data(tmp_path_factory.mktemp("ablate"))


def test_sft_targets_are_the_teachers_and_rl_labels_are_gold(data):
    out, summary = data
    train = split_pairs(generate_synthetic(SMALL.n_pairs, seed=4), {"train": 0.8, "val": 0.05, "test": 0.15},
                        seed=4)["train"]
    teacher = ImperfectTeacher(load_teacher_errors(), seed=4)
    want = {p.pair_id: teacher.answer(p) for p in train}
    ids = [x["pair_id"] for x in pq.read_table(out / "sft.parquet", columns=["extra_info"]).column("extra_info").to_pylist()]
    assert sorted(ids) == sorted(want)  # every training pair, none dropped
    post = [parse_response(t) for t in _assistant(out / "sft.parquet")]
    pre = [parse_response(t, fmt="pre_cot") for t in _assistant(out / ablate.PRE_COT_DIR / "sft.parquet")]
    label = _assistant(out / ablate.LABEL_ONLY_DIR / "sft.parquet")
    assert [p.level for p in post] == [want[i].level for i in ids] == [p.level for p in pre]
    assert [TAOSR1.level_of_label(x) for x in label] == [want[i].level for i in ids]
    assert [p.reasoning for p in post] == [p.reasoning for p in pre] == [want[i].reasoning for i in ids]
    wrong = sum(want[i].level != want[i].gold for i in ids) / len(ids)
    assert 0.25 < wrong < 0.40 and math.isclose(summary["teacher"]["wrong_label_rate"], wrong)
    # RL, raw RL and eval rows carry the gold label (GRPO's reward), the RL rows the stronger teacher's answer.
    gold = {p.pair_id: p.level for p in train}
    for path in (out / "rl_train.parquet", out / ablate.RAW_DIR / "rl_train.parquet"):
        rows = pq.read_table(path).to_pylist()
        for r in rows:
            assert int(r["reward_model"]["ground_truth"]) == gold[r["extra_info"]["pair_id"]] == r["extra_info"]["level"]
            assert compute_score("s", r["extra_info"]["teacher_response"], r["reward_model"]["ground_truth"])["score"] == 1.0
    assert summary["rl_cv_after"] == 0.0 < summary["rl_raw_cv"]
    assert summary["rl_raw_rows"] == len(train) > summary["rl_rows"]


def test_no_teacher_errors_gives_gold_sft_targets(tmp_path):
    gold = {p.pair_id: p.level for p in generate_synthetic(SMALL.n_pairs, seed=1)}

    def sft_vs_gold(out: Path) -> tuple[list[int], list[int]]:
        ids = [x["pair_id"] for x in pq.read_table(out / "sft.parquet", columns=["extra_info"]).column("extra_info").to_pylist()]
        return [parse_response(t).level for t in _assistant(out / "sft.parquet")], [gold[i] for i in ids]

    out, summary = _data(tmp_path / "perfect", "none", seed=1)
    taught, want = sft_vs_gold(out)
    assert taught == want and summary["teacher"]["wrong_label_rate"] == 0.0
    taught, want = sft_vs_gold(_data(tmp_path / "imperfect", None, seed=1)[0])
    assert taught != want


def test_stronger_teacher_is_chosen_when_no_pass_at_n_sample_is_right(data, tmp_path):
    """Stage 2: prompts with no right sample get the perfect teacher's answer as chosen; GRPO's reward (the
    RL rows' ground truth) stays the gold label."""
    from taosr1_verl.pairs.stage import run_pairs

    out, _ = data
    rl = pq.read_table(out / "rl_train.parquet").to_pylist()[:200]
    prompts = tmp_path / "prompts.parquet"
    pq.write_table(pq.read_table(out / "rl_train.parquet").slice(0, 200), prompts)
    pairs = {p.pair_id: p for p in generate_synthetic(SMALL.n_pairs, seed=4)}
    # The SFT model stand-in: a student that samples its imperfect teacher (4 samples, 4 teacher seeds).
    samplers = [ImperfectTeacher(load_teacher_errors(), seed=s) for s in range(4)]
    responses = tmp_path / "samples.jsonl"
    responses.write_text("".join(json.dumps({"index": r["extra_info"]["index"],
                                             "responses": [t(pairs[r["extra_info"]["pair_id"]]) for t in samplers]}) + "\n"
                                 for r in rl))
    strong = run_pairs(responses, tmp_path / "strong", prompts_path=prompts, teacher=out / "teacher.jsonl")
    outcomes = strong.report["outcomes"]
    assert outcomes["paired_teacher"] > 10 and outcomes["skipped_teacher_wrong"] == 0
    assert outcomes["skipped_no_teacher"] == 0
    teacher_answers = {json.loads(line)["pair_id"]: json.loads(line)["response"]
                       for line in (out / "teacher.jsonl").read_text().splitlines()}
    by_index = {r["extra_info"]["index"]: r for r in rl}
    for pair in strong.pairs:
        row = by_index[pair["index"]]
        chosen = pair["chosen"][0]["content"]
        assert compute_score("s", chosen, row["reward_model"]["ground_truth"])["acc"] == 1
        assert int(row["reward_model"]["ground_truth"]) == pairs[row["extra_info"]["pair_id"]].level
        if pair["chosen_source"] == "teacher":
            assert pair["correct"] == 0 and chosen == teacher_answers[row["extra_info"]["pair_id"]]
    # With the imperfect teacher in its place, some of those prompts would get no pair at all (its answer is
    # wrong there too): the stronger model is what fills them.
    weak_file = tmp_path / "weak.jsonl"
    weak_file.write_text("".join(json.dumps({"pair_id": pid, "response": samplers[0](p)}) + "\n"
                                 for pid, p in pairs.items()))
    weak = run_pairs(responses, tmp_path / "weak", prompts_path=prompts, teacher=weak_file)
    assert weak.report["outcomes"]["skipped_teacher_wrong"] > 0
    assert weak.report["outcomes"]["paired_teacher"] < outcomes["paired_teacher"]


def test_raw_grpo_row_trains_on_the_raw_mix_with_verls_filter(data, tiny_model_dir):
    from taosr1_verl.integrations.verl.recipes import compose_recipe, validate_recipe
    from taosr1_verl.pipeline.demo import grpo_overrides

    out, _ = data
    run = out.parent
    ctx = StageContext(run, _settings())
    view = ablate._view(ctx, data=ablate.RAW_DIR, sampler="verl")
    cfg = compose_recipe("grpo", grpo_overrides(view, run / "grpo_raw", Path(tiny_model_dir), "verl"), device="cpu")
    validate_recipe("grpo", cfg)
    assert cfg.data.train_files == str(out / ablate.RAW_DIR / "rl_train.parquet")
    assert cfg.algorithm.filter_groups.enable is True and cfg.trainer.v1.sampler.custom_sampler.path is None
    # the pre-CoT SFT view reads its own parquet with plain loss weight
    pre = ablate._view(ctx, data=ablate.PRE_COT_DIR, profile={"sft_label_weight": 1.0})
    assert pre.stage_dir("data") / "sft.parquet" == out / ablate.PRE_COT_DIR / "sft.parquet"
    assert pre.settings["profile"]["sft_label_weight"] == 1.0 and ctx.settings["profile"]["sft_label_weight"] == 20.0


def test_shared_stages_have_the_same_predecessors_in_every_row():
    before: dict[str, tuple[str, ...]] = {}
    for row in ablate.ROWS:
        names = [s.name for s in ablate.row_stages(row)]
        assert names[:2] == ["data", "model"] and names[-1] == row.eval_stage
        for i, n in enumerate(names):
            assert before.setdefault(n, tuple(names[:i])) == tuple(names[:i]), n
    assert set(ablate.RUN_ORDER) == set(ablate.ROW_IDS)


def _per_seed(values: dict[str, list[float]], metric: str = "served_macro_f1") -> dict:
    return {rid: {s: {metric: v} for s, v in enumerate(vals)} for rid, vals in values.items()}


@pytest.mark.parametrize("better, worse, status", [
    ([0.60, 0.62, 0.61], [0.50, 0.53, 0.50], "holds"),
    ([0.50, 0.53, 0.50], [0.60, 0.62, 0.61], "reversed"),
    ([0.60, 0.50, 0.61], [0.58, 0.55, 0.57], "not shown"),  # mean +0.003, noisy
    ([0.60], [0.50], "n/a (fewer than 2 seeds)"),
])
def test_a_step_counts_only_beyond_two_standard_errors(better, worse, status):
    check = ablate.Check("x", "a", "b", "served_macro_f1")
    got = ablate.check_step(check, _per_seed({"a": better, "b": worse}))
    assert got["status"] == status
    if len(better) > 1:
        diffs = [x - y for x, y in zip(better, worse, strict=True)]
        assert math.isclose(got["mean_diff"], sum(diffs) / len(diffs))


def test_rates_count_a_drop_as_the_better_direction():
    check = ablate.Check("x", "grpo", "dpo", "false_positive_rate", lower=True)
    got = ablate.check_step(check, _per_seed({"grpo": [0.10, 0.12, 0.11], "dpo": [0.20, 0.21, 0.22]},
                                             "false_positive_rate"))
    assert got["status"] == "holds" and got["mean_diff"] > 0


def _fake_eval(run: Path, seed: int, row: ablate.Row, f1: float, fp: float, hall: float) -> None:
    d = run / f"seed{seed}" / row.eval_stage
    d.mkdir(parents=True)
    metrics = {"n": 100, "macro_f1": f1, "accuracy": f1 + 0.1, "tier_macro_f1": f1, "false_positive_rate": fp,
               "related_f1": 0.3}
    summary = {"generate": {**metrics, "format_error_rate": 0.0}, "hallucination": {"rate": hall}}
    if row.first_token:
        summary.update(first_token_argmax=metrics, first_token_cumpt=metrics)
    (d / RECORD).write_text(json.dumps({"summary": summary}))


def test_table_from_the_runs_records(tmp_path):
    rows = ablate.ROW_IDS
    for seed in range(3):
        for i, row in enumerate(ablate.ROWS):
            if row.id == "grpo_raw" and seed == 2:
                continue  # not run yet
            _fake_eval(tmp_path, seed, row, 0.4 + 0.05 * i + 0.01 * seed, 0.3 - 0.02 * i, 0.2 - 0.01 * i)
    result = ablate.write_table(tmp_path, "full", rows, (0, 1, 2))
    assert not result["complete"] and result["missing"] == ["seed2/grpo_raw"]
    assert result["table"]["grpo"]["served_macro_f1"]["n"] == 3 and result["table"]["grpo_raw"]["served_macro_f1"]["n"] == 2
    assert math.isclose(result["table"]["sft"]["served_macro_f1"]["mean"], 0.4 + 0.1 + 0.01)
    assert result["table"]["sft_label"]["hallucination_rate"] is not None
    checks = {c["claim"]: c for c in result["checks"]}
    assert checks["GRPO above DPO"]["status"] == "holds"  # +0.05 on every seed
    assert checks["class-balanced at least raw label mix"]["status"] == "reversed"
    md = (tmp_path / "ablation.md").read_text()
    assert "**Partial**" in md and "| SFT, label first (post-CoT) | 51.0 ± 1.0 |" in md
    assert "| + GRPO, our dynamic sampling |" in md and "| 67.12 | 76.86 |" in md
    assert (tmp_path / "ablation.png").stat().st_size > 5000
    assert json.loads((tmp_path / "ablation.json").read_text())["checks"] == json.loads(json.dumps(result["checks"]))


def test_hallucination_counts_well_formed_answers_with_findings():
    from taosr1_verl.data.synth import findings_level
    from taosr1_verl.response import make_parser

    good = "2\n<think>\n3. Category: x is not sofa [R02].\n4. Attributes: none asked.\n5. Verdict: Mismatch [R02].\n</think>"
    bad = good.replace("2\n", "3\n", 1)
    no_findings = "4\n<think>\nlooks fine\n</think>"
    got = ablate.hallucination([good, bad, no_findings, "garbage", None], make_parser(), findings_level)
    assert got == {"n_well_formed": 3, "n_with_findings": 2, "coverage": 2 / 3, "rate": 0.5}
    assert math.isnan(ablate.hallucination([], make_parser(), findings_level)["rate"])


@pytest.mark.parametrize("argv, match", [
    (["--rows", "sft,nope"], "unknown ablation row(s) ['nope']"),
    (["--seeds", "0,x"], "expected seeds like 0,1,2"),
    (["--seeds", "1,1"], "distinct seeds"),
    (["--teacher-errors", "/no/such.yaml"], "no such file"),
    (["--profile", "huge"], "invalid choice"),
])
def test_cli_mistakes_are_one_line(argv, match, tmp_path, capsys):
    assert main(["ablate", "--run-dir", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("taosr1 ablate: error:") and match in err and "\n" not in err


def test_a_bad_teacher_errors_file_fails_before_any_stage(tmp_path, capsys):
    bad = tmp_path / "errors.yaml"
    bad.write_text("rule_misses: {}\n")
    assert main(["ablate", "--run-dir", str(tmp_path / "r"), "--teacher-errors", str(bad)]) == 2
    assert "errors.yaml: misread_attribute: missing section" in capsys.readouterr().err
    assert not (tmp_path / "r" / "seed0").exists()


def test_report_only_writes_the_table_of_what_is_there(tmp_path, capsys):
    _fake_eval(tmp_path, 0, ablate.ROWS[2], 0.5, 0.2, 0.1)
    assert main(["ablate", "--run-dir", str(tmp_path), "--profile", "micro", "--report-only"]) == 0
    assert "partial" in capsys.readouterr().out
    result = json.loads((tmp_path / "ablation.json").read_text())
    assert list(result["per_seed"]) == ["sft"] and asdict(ablate.PROFILES["micro"].stages) == result["stages"]
