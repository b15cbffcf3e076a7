"""`taosr1 ablate --profile micro` end to end: real verl SFT (three formats) and GRPO, vLLM-CPU pass@N, TRL DPO,
evaluation and the table; then a rerun that trains nothing.

Slow (about 4 minutes on 2 cores). It checks the runner, not the paper's order (one seed, tiny sizes). Of the
GRPO rows it runs ``grpo_raw`` (verl's filter on the raw-mix parquet, through the data redirect); ``grpo``
(our sampler) is the demo's own GRPO stage, run by test_demo_quick_on_cpu.py, and the overrides of all GRPO
rows are composed and validated in test_ablate_on_cpu.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from taosr1_verl.pipeline.ablate import ROWS

MARKER = f"taosr1-ablate-test-{uuid.uuid4().hex}"
RUN_ROWS = ("sft_label", "sft_pre", "sft", "dpo", "grpo_raw")


def _processes_with_marker() -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if MARKER.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _ablate(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TAOSR1_TEST_MARKER": MARKER}
    return subprocess.run([sys.executable, "-m", "taosr1_verl.cli", "ablate", "--profile", "micro", "--run-dir",
                           str(run_dir), "--rows", ",".join(RUN_ROWS), *extra],
                          capture_output=True, text=True, env=env, timeout=1200)


@pytest.mark.slow
def test_micro_ablation_end_to_end_and_resume(tmp_path):
    run_dir = tmp_path / "ablate"
    proc = _ablate(run_dir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"table: {run_dir / 'ablation.md'}" in proc.stdout and "partial" not in proc.stdout

    result = json.loads((run_dir / "ablation.json").read_text())
    assert result["complete"] and sorted(result["rows"]) == sorted(RUN_ROWS) and result["seeds"] == [0]
    by_id = {r.id: r for r in ROWS}
    for rid in RUN_ROWS:
        m = result["per_seed"][rid]["0"]
        assert 0.0 <= m["served_macro_f1"] <= 1.0, rid
        # label-first rows are scored on the first token; rows with reasoning also generate and are parsed
        assert (m["first_token_macro_f1"] is not None) == by_id[rid].first_token, rid
        assert (m["format_error_rate"] is not None) == by_id[rid].generate, rid
    # One SFT, pass@N and DPO served both rows that need them; each model is its stage's HF export.
    seed = run_dir / "seed0"
    for stage in ("sft", "sft_pre", "sft_label", "dpo", "grpo_raw"):
        assert (seed / stage / "model" / "config.json").exists(), stage
    assert not (seed / "grpo").exists() and not list(seed.glob(".*.partial"))
    data = json.loads((seed / "data" / "stage.json").read_text())["summary"]
    assert data["rl_cv_after"] == 0.0 < data["rl_raw_cv"] and 0.25 < data["teacher"]["wrong_label_rate"] < 0.4
    passn = json.loads((seed / "passn" / "stage.json").read_text())["summary"]
    assert passn["outcomes"]["skipped_teacher_wrong"] == 0  # the stronger teacher is always right
    md = (run_dir / "ablation.md").read_text()
    assert "| SFT, reasoning first (pre-CoT) |" in md and "n/a (fewer than 2 seeds)" in md
    assert (run_dir / "ablation.png").stat().st_size > 5000
    assert _processes_with_marker() == []

    # Resume: every stage of every row is done; nothing trains again.
    again = _ablate(run_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "running again" not in again.stderr and "verl sft" not in again.stderr
    stages_per_row = {"sft_label": 4, "sft_pre": 4, "sft": 4, "dpo": 6, "grpo_raw": 7}
    assert again.stderr.count("done before, skipped") == sum(stages_per_row.values())
