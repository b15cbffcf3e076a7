"""`taosr1 eval` end to end on a tiny offline model and a real eval parquet (docs/data.md layout)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taosr1_verl.cli import main
from taosr1_verl.evaluation.metrics import macro_f1, tier_macro_f1
from taosr1_verl.evaluation.run import read_eval_rows


@pytest.fixture(scope="module")
def eval_parquet(tmp_path_factory):
    from taosr1_verl.data import BuildConfig, generate_synthetic, write_eval_parquet
    from taosr1_verl.prompts import PromptConfig

    path = tmp_path_factory.mktemp("data") / "eval.parquet"
    pairs = generate_synthetic(40, seed=3)
    write_eval_parquet(pairs, path, config=BuildConfig(prompt=PromptConfig(instructions="compact")))
    return path


def test_eval_both_modes_writes_a_consistent_report(tiny_model, eval_parquet, tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["eval", "--model", str(tiny_model), "--data", str(eval_parquet), "--out", str(out),
               "--modes", "first_token,generate", "--max-new-tokens", "6", "--batch-size", "16"])
    assert rc == 0
    assert "first_token_cumpt: macro_f1=" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    n = len(read_eval_rows(eval_parquet))
    assert report["n"] == n == 40
    assert set(report["metrics"]) == {"first_token_argmax", "first_token_cumpt", "generate"}
    assert set(report["agreement"]) == {"first_token_argmax vs first_token_cumpt", "first_token_argmax vs generate",
                                        "first_token_cumpt vs generate"}
    cal = report["calibration"]
    assert cal["source"].startswith("calibrated") and len(cal["sweep"]) == 99
    assert cal["score"] == max(s["score"] for s in cal["sweep"])
    # A random tiny model writes no well-formed response in 6 tokens: every row is a format error.
    gen = report["metrics"]["generate"]
    assert gen["format_error_rate"] == 1.0 and sum(report["format_errors"].values()) == n
    # The report's numbers follow from the per-row predictions (nothing hard-coded, every row counted).
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == n
    gold = [p["gold"] for p in preds]
    cum = [p["first_token_cumpt"] for p in preds]
    assert report["metrics"]["first_token_cumpt"]["macro_f1"] == pytest.approx(macro_f1(gold, cum))
    assert report["calibration"]["score"] == pytest.approx(tier_macro_f1(gold, cum))
    assert all(abs(sum(p["probs"]) - 1) < 1e-4 for p in preds)
    for name in ("confusion_first_token_cumpt.png", "confusion_generate.png", "beta_sweep.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "| first_token_cumpt |" in md and "beta_sweep.png" in md


def test_given_beta_and_bad_files(tiny_model, eval_parquet, tmp_path, capsys):
    out = tmp_path / "r2"
    assert main(["eval", "--model", str(tiny_model), "--data", str(eval_parquet), "--out", str(out),
                 "--beta", "0.3", "--limit", "10"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 10 and report["calibration"]["beta"] == 0.3 and report["calibration"]["source"] == "given"
    assert "generate" not in report["metrics"]

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"prompt": [[{"role": "user", "content": "x"}]], "label": ["4"]}), bad)
    assert main(["eval", "--model", str(tiny_model), "--data", str(bad), "--out", str(out)]) == 2
    assert "missing column(s) ['reward_model']" in capsys.readouterr().err
    bad2 = tmp_path / "bad2.parquet"
    pq.write_table(pa.table({"prompt": [[{"role": "user", "content": "x"}]] * 2,
                             "reward_model": [{"ground_truth": "4"}, {"ground_truth": "7"}]}), bad2)
    assert main(["eval", "--model", str(tiny_model), "--data", str(bad2), "--out", str(out)]) == 2
    assert "row 1: field 'reward_model.ground_truth'" in capsys.readouterr().err
