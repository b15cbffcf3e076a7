"""The recipe runner's commands (local, and the Ray job of `--submit`) and argument handling; no trainer starts."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from taosr1_verl.commands.recipe import add_arguments, normalize_args
from taosr1_verl.integrations.verl import launch, submit
from taosr1_verl.integrations.verl.environment import CPU_ENV, PLUGIN_MODULES
from taosr1_verl.integrations.verl.recipes import RecipeError, get_recipe

REPO_RECIPES = Path(__file__).resolve().parents[3] / "recipes"


def test_sft_runs_under_torchrun_and_grpo_under_main_ppo_with_the_packaged_recipes():
    sft = launch.build_command("sft", ["a=1"], device="cpu", nproc_per_node=2, python="py")
    assert sft[:5] == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert sft[5:7] == ["-m", "verl.trainer.sft_trainer"] and sft[-2:] == ["overlays/sft=cpu", "a=1"]
    grpo = launch.build_command("grpo", [], device="gpu", python="py")
    # pkg://: an installed wheel finds its recipes wherever it is run from
    assert grpo == ["py", "-m", "verl.trainer.main_ppo", "--config-path=pkg://taosr1_verl.recipes",
                    "--config-name=grpo", "overlays/ppo=gpu"]


def test_env_adds_the_cpu_runtime_only_on_cpu():
    cpu = launch.build_env("cpu", {"PATH": "/bin"})
    gpu = launch.build_env("gpu", {"PATH": "/bin"})
    assert all(cpu[k] == v for k, v in CPU_ENV.items())
    assert "VERL_PLATFORM" not in gpu
    assert gpu["VERL_USE_EXTERNAL_MODULES"] == ",".join(PLUGIN_MODULES) == cpu["VERL_USE_EXTERNAL_MODULES"]


def test_a_submitted_job_runs_the_local_argv_through_rays_quoting_and_carries_the_plugin_env():
    job = submit.build_job("grpo", ["data.train_files=/shared/a b.parquet", "trainer.nnodes=2"], device="gpu",
                           environ={"VERL_USE_EXTERNAL_MODULES": "my.mod", "HOME": "/x"})
    assert job.entrypoint[:3] == ["python3", "-m", "verl.trainer.main_ppo"]
    assert "data.train_files=/shared/a b.parquet" in job.entrypoint
    assert job.runtime_env == {"env_vars": {"VERL_USE_EXTERNAL_MODULES": ",".join(["my.mod", *PLUGIN_MODULES])}}
    # Ray joins the entrypoint with shlex.join and runs it through a shell: it must split back to our argv.
    assert shlex.split(submit._shell_join(job.entrypoint)) == job.entrypoint
    argv = submit.ray_job_submit_argv(job, "http://head:8265")
    assert argv[:5] == ["ray", "job", "submit", "--address=http://head:8265", f"--submission-id={job.submission_id}"]
    assert json.loads(argv[5].split("=", 1)[1]) == job.runtime_env and argv[argv.index("--") + 1:] == job.entrypoint


def test_a_cpu_job_joins_the_cluster_instead_of_sizing_its_own():
    job = submit.build_job("grpo", [], device="cpu", environ={})
    assert {o for o in job.entrypoint if o.startswith("++ray_kwargs")} == set(submit.JOINING_OVERRIDES)
    assert job.runtime_env["env_vars"]["VERL_PLATFORM"] == "cpu"
    sft = submit.build_job("sft", [], device="cpu", environ={})
    assert not any(o.startswith("++ray_kwargs") for o in sft.entrypoint)


def test_a_users_recipe_file_is_uploaded_and_found_in_the_jobs_working_dir():
    job = submit.build_job(str(REPO_RECIPES / "my_grpo.yaml"), [], device="gpu", environ={})
    assert job.runtime_env["working_dir"] == str(REPO_RECIPES)
    assert "--config-dir=." in job.entrypoint and "--config-name=my_grpo" in job.entrypoint


def test_ray_token_auth_is_switched_on_when_a_token_is_at_hand(tmp_path):
    assert "RAY_AUTH_MODE" not in submit.ray_auth_env({"HOME": str(tmp_path)})
    token = tmp_path / "token"
    token.write_text("abc")
    assert submit.ray_auth_env({"HOME": str(tmp_path), "RAY_AUTH_TOKEN_PATH": str(token)})["RAY_AUTH_MODE"] == "token"
    assert submit.ray_auth_env({"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "abc"})["RAY_AUTH_MODE"] == "token"
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("abc")
    assert submit.ray_auth_env({"HOME": str(tmp_path)})["RAY_AUTH_MODE"] == "token"
    # an explicit choice is kept
    assert submit.ray_auth_env({"HOME": str(tmp_path), "RAY_AUTH_MODE": "disabled"})["RAY_AUTH_MODE"] == "disabled"
    # the token itself, for the job API's Authorization header
    assert submit.ray_token({"HOME": str(tmp_path), "RAY_AUTH_TOKEN_PATH": str(token)}) == "abc"
    assert submit.ray_token({"HOME": str(tmp_path / "none")}) is None


def test_a_dead_cluster_address_is_one_clear_error(capsys):
    from taosr1_verl.cli import main

    code = main(["recipe", "run", "grpo", "--no-validate", "--submit", "http://127.0.0.1:9", "--device", "gpu"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("taosr1 recipe: error: Ray cluster at http://127.0.0.1:9"), err


def test_a_users_recipe_file_must_extend_one_recipe_and_find_ours(tmp_path):
    spec = get_recipe(str(REPO_RECIPES / "my_grpo.yaml"))
    assert (spec.kind, spec.entry, spec.name) == ("ppo", "verl.trainer.main_ppo", "my_grpo")
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults: [ppo_trainer, _self_]\n")
    with pytest.raises(RecipeError, match="hydra.searchpath must list"):
        get_recipe(str(bad))
    bad.write_text("hydra: {searchpath: [pkg://taosr1_verl.recipes, pkg://verl.trainer.config]}\ndefaults: [_self_]\n")
    with pytest.raises(RecipeError, match="must extend exactly one"):
        get_recipe(str(bad))
    with pytest.raises(RecipeError, match="not found"):
        get_recipe(str(tmp_path / "none.yaml"))
    with pytest.raises(RecipeError, match="unknown recipe 'ppo'"):
        get_recipe("ppo")


def test_options_may_follow_the_overrides():
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = normalize_args(p.parse_args(["grpo", "a=1", "--device", "gpu", "b=2", "--timeout", "5"]))
    assert (args.recipe, args.device, args.timeout, args.overrides) == ("grpo", "gpu", 5.0, ["a=1", "b=2"])
    args = normalize_args(p.parse_args(["--device", "gpu", "sft"]))
    assert args.device == "gpu" and args.overrides == []


def test_cli_dry_run_prints_the_command(capsys):
    from taosr1_verl.cli import main

    assert main(["recipe", "run", "grpo", "--device", "cpu", "--dry-run", "trainer.total_training_steps=2"]) == 0
    out = capsys.readouterr().out.strip()
    assert "verl.trainer.main_ppo" in out and out.endswith("overlays/ppo=cpu trainer.total_training_steps=2")
    assert main(["recipe", "run", "grpo", "--submit", "http://h:8265", "--dry-run", "--device", "gpu"]) == 0
    argv = shlex.split(capsys.readouterr().out.strip())
    assert argv[:4] == ["ray", "job", "submit", "--address=http://h:8265"]
