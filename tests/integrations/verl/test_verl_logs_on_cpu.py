"""Reading verl's console log: per-step metric lines, the step progress bar, the log's tail."""

from __future__ import annotations

from taosr1_verl.integrations.verl import verl_logs


def test_metric_series_reads_verl_step_lines_and_skips_the_rest(tmp_path):
    log = tmp_path / "grpo.log"
    log.write_text(
        "(TaskRunner pid=1) step:1 - critic/score/mean:0.25 - timing_s/step:3.5 - a/b:1e-3\n"
        "Training Progress: 50%| critic/score/mean:9.9 (not a step line)\n"
        "(TaskRunner pid=1) step:2 - critic/score/mean:-0.5 - timing_s/step:4\n"
    )
    series = verl_logs.read_metric_series(log, ["critic/score/mean", "timing_s/step", "a/b", "absent"])
    assert series == {"critic/score/mean": [0.25, -0.5], "timing_s/step": [3.5, 4.0], "a/b": [0.001]}
    assert verl_logs.read_metric_series(tmp_path / "none.log", ["x"]) == {}


def test_step_progress_follows_verls_step_lines_only(tmp_path, caplog):
    # Lines as verl 0.9.1 prints them: SFT's tqdm text and the metric line share a line, GRPO's come from a
    # Ray actor with a colour prefix; other "step:" keys (global_step, timing_s/step) are not steps.
    lines = [
        "Epoch 1/100:   1%|          | 1/195 [00:00<01:50,  1.75it/s]step:2 - train/loss:6.95",
        "\x1b[36m(TaskRunnerV1 pid=1)\x1b[0m step:5 - timing_s/step:3.1 - critic/score/mean:0.4",
        "saving global_step:9 - x:1", "timing_s/step:12 - y:2", "step:4 - late duplicate",
    ]
    with caplog.at_level("INFO"), verl_logs.StepProgress(total=10, desc="t", disable=True) as progress:
        for line in lines:
            progress(line)
    assert progress.step == 5
    assert not [r for r in caplog.records if "train/loss" in r.getMessage()]  # not echoed at INFO
    log = tmp_path / "run.log"
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    assert verl_logs.log_tail(log, 3) == "line 47\nline 48\nline 49\n"
    assert verl_logs.log_tail(tmp_path / "missing.log") == ""
