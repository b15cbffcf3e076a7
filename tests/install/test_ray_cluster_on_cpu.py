"""The card's main use, for real: recipes submitted as Ray jobs to a running two-node Ray cluster, from the
installed wheel (tests/install/conftest.py). Slow: every job starts verl's trainer and a vLLM-CPU server.

- our CLI (``taosr1 recipe run grpo --submit``) runs 2 GRPO steps with the TaoSR1 reward and sampler;
- a plain verl user's own YAML (``recipes/my_grpo.yaml``: verl's ``ppo_trainer`` naming our reward, replay
  buffer and trainer by ``pkg://``) goes through ``ray job submit`` and ``verl.trainer.main_ppo`` with no CLI
  of ours, and resumes the first job's run: step 3 from its checkpoint, with its sampler's tracker;
- ``ray job stop`` of a running job;
- verl's own generation entry point samples N answers per prompt on the cluster, ``taosr1 pairs`` grades them.

After every job, success or stop, no trainer, rollout or job process of the cluster may be left.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from taosr1_verl.integrations.verl.environment import CPU_ENV, PLUGIN_MODULES
from taosr1_verl.integrations.verl.submit import JOINING_OVERRIDES
from taosr1_verl.integrations.verl.verl_logs import read_metric_series

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
OBSERVED = "training/taosr1_sampler/tracker/groups_observed"
FINISHED = "training/taosr1_sampler/groups_finished"
JOB_ENV = {"env_vars": CPU_ENV | {"VERL_USE_EXTERNAL_MODULES": ",".join(PLUGIN_MODULES)}}
"""What a plain verl user passes to ``ray job submit --runtime-env-json`` for a CPU cluster (docs/recipes.md)."""


def _workload_gone(cluster, timeout: float = 60.0) -> list[str]:
    """The cluster's leftover work after waiting up to ``timeout`` s for Ray to reap the job's actors."""
    deadline = time.monotonic() + timeout
    left = cluster.workload()
    while left and time.monotonic() < deadline:
        time.sleep(2)
        left = cluster.workload()
    return left


def _ray(wheel_env, cluster, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Ray's own CLI as a user runs it against this cluster (token mode on, as on a ``ray start`` head)."""
    return subprocess.run([str(wheel_env.bin / "ray"), *args], env=cluster.env | {"RAY_AUTH_MODE": "token"},
                          capture_output=True, text=True, timeout=timeout)


def _series(text: str, tmp_path: Path, keys: tuple[str, ...]) -> dict[str, list[float]]:
    log = tmp_path / f"{uuid.uuid4().hex}.log"
    log.write_text(text)
    return read_metric_series(log, keys)


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory, tiny_model_dir, verl_parquets, grpo_small) -> dict:
    ckpt = tmp_path_factory.mktemp("cluster_grpo") / "ckpt"
    common = [f"actor_rollout_ref.model.path={tiny_model_dir}", f"data.train_files={verl_parquets['rl']}",
              f"data.val_files={verl_parquets['rl']}", f"trainer.default_local_dir={ckpt}", *grpo_small]
    return {"ckpt": ckpt, "common": common}


def test_our_cli_submits_grpo_to_the_cluster(wheel_env, ray_cluster, grpo_run, tmp_path):
    cmd = [str(wheel_env.bin / "taosr1"), "recipe", "run", "grpo", "--device", "cpu", "--submit",
           ray_cluster.address, *grpo_run["common"], "trainer.total_training_steps=2"]
    # cluster.env has the token's path but no RAY_AUTH_MODE: the CLI finds the token itself.
    first = subprocess.run(cmd, cwd=tmp_path, env=ray_cluster.env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-3000:]
    job_id = re.search(r"job (taosr1-grpo-[0-9a-f]+): SUCCEEDED", first.stderr).group(1)
    ckpt = grpo_run["ckpt"]
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert (ckpt / "global_step_2" / "actor").is_dir()
    series = _series(first.stdout, tmp_path, (OBSERVED, "critic/score/mean"))  # the job's log, streamed by the CLI
    observed = series.get(OBSERVED, [])
    assert len(observed) == 2 and 0 < observed[0] < observed[1], observed
    # the TaoSR1 reward scored: a random model writes no label line, which is the malformed penalty -1
    assert series.get("critic/score/mean") == [-1.0, -1.0], series
    logs = _ray(wheel_env, ray_cluster, "job", "logs", job_id, f"--address={ray_cluster.address}", timeout=120)
    assert logs.returncode == 0 and FINISHED in logs.stdout, logs.stderr[-2000:]
    assert not _workload_gone(ray_cluster)
    grpo_run["observed"] = observed


def test_a_plain_verl_yaml_through_ray_job_submit_resumes_that_run(wheel_env, ray_cluster, grpo_run, tmp_path):
    if "observed" not in grpo_run:
        pytest.skip("needs the checkpoint of test_our_cli_submits_grpo_to_the_cluster")
    user_dir = tmp_path / "my_recipes"  # the user's own directory, uploaded as the job's working dir
    user_dir.mkdir()
    shutil.copy(REPO / "recipes" / "my_grpo.yaml", user_dir)
    job_id = f"plain-{uuid.uuid4().hex[:8]}"
    proc = _ray(wheel_env, ray_cluster, "job", "submit", f"--address={ray_cluster.address}",
                f"--submission-id={job_id}", f"--working-dir={user_dir}", f"--runtime-env-json={json.dumps(JOB_ENV)}",
                "--", "python3", "-m", "verl.trainer.main_ppo", "--config-dir=.", "--config-name=my_grpo",
                "overlays/ppo=cpu", *JOINING_OVERRIDES, *grpo_run["common"], "trainer.total_training_steps=3")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    status = _ray(wheel_env, ray_cluster, "job", "status", job_id, f"--address={ray_cluster.address}", timeout=120)
    assert f"Job '{job_id}' succeeded" in status.stdout + status.stderr, status.stdout + status.stderr
    ckpt = grpo_run["ckpt"]
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "3"
    steps = [int(m) for m in re.findall(r"(?:^|\s)step:(\d+) ", proc.stdout)]
    assert steps and set(steps) == {3}, steps  # resumed from global_step_2
    # Our sampler's tracker was restored from that checkpoint: step 3 adds its groups to what steps 1-2 taught it.
    series = _series(proc.stdout, tmp_path, (OBSERVED, FINISHED))
    assert series[OBSERVED] == [grpo_run["observed"][1] + series[FINISHED][0]], (grpo_run["observed"], series)
    assert not _workload_gone(ray_cluster)


def test_a_failing_job_leaves_nothing_behind(wheel_env, ray_cluster, grpo_run, tmp_path):
    """A job that dies in the trainer (its model does not exist) ends FAILED, and its actors with it."""
    job_id = f"failing-{uuid.uuid4().hex[:8]}"
    proc = _ray(wheel_env, ray_cluster, "job", "submit", f"--address={ray_cluster.address}",
                f"--submission-id={job_id}", f"--runtime-env-json={json.dumps(JOB_ENV)}", "--",
                "python3", "-m", "verl.trainer.main_ppo", "--config-path=pkg://taosr1_verl.recipes",
                "--config-name=grpo", "overlays/ppo=cpu", *JOINING_OVERRIDES, *grpo_run["common"],
                f"actor_rollout_ref.model.path={tmp_path / 'no_such_model'}",
                f"trainer.default_local_dir={tmp_path / 'ckpt'}")
    assert proc.returncode != 0
    status = _ray(wheel_env, ray_cluster, "job", "status", job_id, f"--address={ray_cluster.address}", timeout=120)
    assert f"Job '{job_id}' failed" in status.stdout + status.stderr, status.stdout + status.stderr
    left = _workload_gone(ray_cluster)
    assert not left, left


def test_ray_job_stop_leaves_no_trainer_or_vllm_process(wheel_env, ray_cluster, grpo_run, tmp_path):
    job_id = f"taosr1-stop-{uuid.uuid4().hex[:8]}"
    cmd = [str(wheel_env.bin / "taosr1"), "recipe", "run", "grpo", "--device", "cpu", "--submit",
           ray_cluster.address, "--no-wait", "--no-validate", *grpo_run["common"],
           f"trainer.default_local_dir={tmp_path / 'ckpt'}", "trainer.total_training_steps=200"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=ray_cluster.env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job_id = re.search(r"job (taosr1-grpo-[0-9a-f]+): (PENDING|RUNNING)", proc.stderr).group(1)
    # Wait until the trainer and its vLLM server are up (the heaviest state to leave behind).
    deadline, log = time.monotonic() + 400, ""
    while time.monotonic() < deadline and "step:1 " not in log:
        time.sleep(5)
        log = _ray(wheel_env, ray_cluster, "job", "logs", job_id, f"--address={ray_cluster.address}",
                   timeout=120).stdout
    assert "step:1 " in log, log[-3000:]
    assert ray_cluster.workload()  # the check below can see a running job
    stop = _ray(wheel_env, ray_cluster, "job", "stop", job_id, f"--address={ray_cluster.address}", timeout=300)
    assert stop.returncode == 0, stop.stderr[-2000:]
    status = _ray(wheel_env, ray_cluster, "job", "status", job_id, f"--address={ray_cluster.address}", timeout=120)
    assert f"Job '{job_id}' was stopped" in status.stdout + status.stderr, status.stdout + status.stderr
    left = _workload_gone(ray_cluster, timeout=90)
    assert not left, left


def test_verl_generation_on_the_cluster_then_taosr1_pairs(wheel_env, ray_cluster, tiny_model_dir, verl_parquets,
                                                          tmp_path):
    """pass@N at cluster scale on an existing engine: verl's generation entry point samples N answers per
    prompt with the cluster's vLLM, then ``taosr1 pairs`` grades them and builds the DPO pairs."""
    out = tmp_path / "gen" / "responses.parquet"
    n = 4
    # verl's generation script calls ray.init with env vars of its own; Ray refuses to merge them with the
    # job's unless told to (docs/recipes.md).
    env = {"env_vars": JOB_ENV["env_vars"] | {"RAY_OVERRIDE_JOB_RUNTIME_ENV": "1"}}
    proc = _ray(wheel_env, ray_cluster, "job", "submit", f"--address={ray_cluster.address}",
                f"--runtime-env-json={json.dumps(env)}", "--",
                "python3", "-m", "verl.trainer.main_generation_server", "--config-path=pkg://taosr1_verl.recipes",
                "--config-name=grpo", "overlays/ppo=cpu", *JOINING_OVERRIDES,
                f"actor_rollout_ref.model.path={tiny_model_dir}", f"data.train_files={verl_parquets['rl']}",
                f"data.val_files={verl_parquets['rl']}", f"+data.output_path={out}",
                f"actor_rollout_ref.rollout.n={n}", "actor_rollout_ref.rollout.response_length=32",
                "actor_rollout_ref.rollout.temperature=1.0")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == pq.read_metadata(verl_parquets["rl"]).num_rows
    assert all(len(r["responses"]) == n for r in rows)
    pairs_dir = tmp_path / "pairs"
    graded = wheel_env.run([str(wheel_env.bin / "taosr1"), "pairs", "--responses", str(out), "--out",
                            str(pairs_dir)], cwd=tmp_path)
    assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-3000:]
    difficulty = pq.read_table(pairs_dir / "difficulty.parquet").to_pylist()
    assert len(difficulty) == len(rows)  # every prompt graded (a random model's answers are malformed)
    assert not _workload_gone(ray_cluster)
