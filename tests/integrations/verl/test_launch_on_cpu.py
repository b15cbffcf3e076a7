"""The recipe runner's commands (local and `ray job submit`) and argument handling; no trainer is started."""

from __future__ import annotations

import json
import shlex

from taosr1_verl.integrations.verl import launch
from taosr1_verl.integrations.verl.cpu_runtime import CPU_ENV, PLUGIN_MODULES, recipes_dir


def test_sft_runs_under_torchrun_and_grpo_under_main_ppo():
    sft = launch.build_command("sft", ["a=1"], device="cpu", nproc_per_node=2, python="py")
    assert sft[:5] == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert sft[5:7] == ["-m", "verl.trainer.sft_trainer"] and sft[-2:] == ["overlays/sft=cpu", "a=1"]
    grpo = launch.build_command("grpo", [], device="gpu", python="py")
    assert grpo == ["py", "-m", "verl.trainer.main_ppo", f"--config-path={recipes_dir()}", "--config-name=grpo",
                    "overlays/ppo=gpu"]


def test_env_adds_the_cpu_runtime_only_on_cpu():
    cpu = launch.build_env("cpu", {"PATH": "/bin"})
    gpu = launch.build_env("gpu", {"PATH": "/bin"})
    assert all(cpu[k] == v for k, v in CPU_ENV.items())
    assert "VERL_PLATFORM" not in gpu and gpu["VERL_USE_EXTERNAL_MODULES"] == ",".join(PLUGIN_MODULES) == cpu["VERL_USE_EXTERNAL_MODULES"]


def test_submit_ships_the_plugin_and_quotes_overrides_for_the_clusters_shell(tmp_path):
    cmd = launch.build_submit_command("grpo", ["data.train_files=/shared/a b.parquet", "trainer.nnodes=2"],
                                      address="http://head:8265", device="gpu", working_dir=tmp_path)
    assert cmd[:4] == ["ray", "job", "submit", "--address=http://head:8265"]
    env = json.loads(cmd[4].split("=", 1)[1])
    assert env["working_dir"] == str(tmp_path) and ".venv" in env["excludes"]
    assert env["env_vars"] == {"VERL_USE_EXTERNAL_MODULES": ",".join(PLUGIN_MODULES)}
    job = cmd[cmd.index("--") + 1:]
    # Ray runs the entrypoint through a shell: splitting it back must give the intended argv.
    argv = shlex.split(" ".join(job))
    assert argv[:3] == ["python3", "-m", "verl.trainer.main_ppo"]
    assert "data.train_files=/shared/a b.parquet" in argv and "--config-path=$PWD/recipes" in argv
    cpu = launch.build_submit_command("sft", [], device="cpu", working_dir=tmp_path)
    assert json.loads(cpu[4].split("=", 1)[1])["env_vars"]["VERL_PLATFORM"] == "cpu"


def test_options_may_follow_the_overrides():
    import argparse

    p = argparse.ArgumentParser()
    launch.add_arguments(p)
    args = launch.normalize_args(p.parse_args(["grpo", "a=1", "--device", "gpu", "b=2", "--timeout", "5"]))
    assert (args.recipe, args.device, args.timeout, args.overrides) == ("grpo", "gpu", 5.0, ["a=1", "b=2"])
    args = launch.normalize_args(p.parse_args(["--device", "gpu", "sft"]))
    assert args.device == "gpu" and args.overrides == []


def test_cli_dry_run_prints_the_command(capsys):
    from taosr1_verl.cli import main

    assert main(["recipe", "run", "grpo", "--device", "cpu", "--dry-run", "trainer.total_training_steps=2"]) == 0
    out = capsys.readouterr().out.strip()
    assert "verl.trainer.main_ppo" in out and out.endswith("overlays/ppo=cpu trainer.total_training_steps=2")


def test_metric_series_reads_verl_step_lines_and_skips_the_rest(tmp_path):
    log = tmp_path / "grpo.log"
    log.write_text(
        "(TaskRunner pid=1) step:1 - critic/score/mean:0.25 - timing_s/step:3.5 - a/b:1e-3\n"
        "Training Progress: 50%| critic/score/mean:9.9 (not a step line)\n"
        "(TaskRunner pid=1) step:2 - critic/score/mean:-0.5 - timing_s/step:4\n"
    )
    series = launch.read_metric_series(log, ["critic/score/mean", "timing_s/step", "a/b", "absent"])
    assert series == {"critic/score/mean": [0.25, -0.5], "timing_s/step": [3.5, 4.0], "a/b": [0.001]}
    assert launch.read_metric_series(tmp_path / "none.log", ["x"]) == {}


def test_step_progress_follows_verls_step_lines_only(tmp_path, caplog):
    # Lines as verl 0.9.1 prints them: SFT's tqdm text and the metric line share a line, GRPO's come from a
    # Ray actor with a colour prefix; other "step:" keys (global_step, timing_s/step) are not steps.
    lines = [
        "Epoch 1/100:   1%|          | 1/195 [00:00<01:50,  1.75it/s]step:2 - train/loss:6.95",
        "\x1b[36m(TaskRunnerV1 pid=1)\x1b[0m step:5 - timing_s/step:3.1 - critic/score/mean:0.4",
        "saving global_step:9 - x:1", "timing_s/step:12 - y:2", "step:4 - late duplicate",
    ]
    with caplog.at_level("INFO"), launch.StepProgress(total=10, desc="t", disable=True) as progress:
        for line in lines:
            progress(line)
    assert progress.step == 5
    assert not [r for r in caplog.records if "train/loss" in r.getMessage()]  # not echoed at INFO
    log = tmp_path / "run.log"
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    assert launch.log_tail(log, 3) == "line 47\nline 48\nline 49\n"
    assert launch.log_tail(tmp_path / "missing.log") == ""
