"""The built wheel, installed (not editable) into a venv of its own and used from outside the checkout.

Slow: builds the wheel, and resolves the GPU extra against the package registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_recipes_and_only_our_package(built_wheel: Path):
    names = zipfile.ZipFile(built_wheel).namelist()
    for recipe in ("grpo.yaml", "sft.yaml", "dpo.yaml", "overlays/ppo/cpu.yaml", "overlays/ppo/gpu.yaml",
                   "overlays/sft/cpu.yaml", "overlays/sft/gpu.yaml"):
        assert f"taosr1_verl/recipes/{recipe}" in names, recipe
    tops = {n.split("/")[0] for n in names if not n.startswith("taosr1_verl-")}
    assert tops == {"taosr1_verl"}, tops  # not tests/, rewards/, samplers/ (verl's wheel ships a `tests` package)


@pytest.mark.parametrize("recipe", ["sft", "grpo"])
@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_recipes_validate_from_any_directory(wheel_env, tmp_path, device, recipe):
    required = {"sft": ["model.path=/models/m", "data.train_files=/data/sft.parquet"],
                "grpo": ["actor_rollout_ref.model.path=/models/m", "data.train_files=/data/rl.parquet",
                         "data.val_files=/data/val.parquet"]}[recipe]
    proc = wheel_env.run([str(wheel_env.bin / "taosr1"), "recipe", "validate", "--device", device, recipe, *required],
                         cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"ok: pkg://taosr1_verl.recipes/{recipe}.yaml ({device})" in proc.stdout


def test_a_users_recipe_next_to_their_data_validates(wheel_env, tmp_path):
    (tmp_path / "mine.yaml").write_text((REPO / "recipes" / "my_grpo.yaml").read_text())
    proc = wheel_env.run([str(wheel_env.bin / "taosr1"), "recipe", "validate", "--device", "cpu", "mine.yaml",
                          "actor_rollout_ref.model.path=/m", "data.train_files=/t", "data.val_files=/v"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_reward_and_sampler_load_by_pkg_in_verls_reward_loop(wheel_env, tmp_path):
    """verl's own reward loop and recipe checks, run by the wheel venv's interpreter from outside the checkout
    (-P: the working directory is not on sys.path)."""
    proc = wheel_env.run(
        [str(wheel_env.python), "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={REPO}",
         "-c", str(REPO / "pyproject.toml"), "-m", "not slow",
         str(REPO / "tests" / "integrations" / "verl" / "test_reward_manager_on_cpu.py"),
         str(REPO / "tests" / "integrations" / "verl" / "test_sampler_entry_on_cpu.py")],
        cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_the_gpu_extra_resolves_with_verls_pinned_stack(built_wheel: Path, tmp_path: Path):
    """``pip install "taosr1-verl[gpu]"`` next to verl 0.9.1's GPU stack, resolved against the registry from
    scratch (no CUDA needed to resolve)."""
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
         str(report), f"taosr1-verl[gpu] @ {built_wheel.as_uri()}", "verl[vllm]==0.9.1"],
        capture_output=True, text=True, timeout=1200, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    assert {k: chosen.get(k) for k in ("verl", "torch", "vllm", "transformers", "trl")} == {
        "verl": "0.9.1", "torch": "2.11.0", "vllm": "0.24.0", "transformers": "5.9.0", "trl": "0.27.0"}
    assert "flash-attn" not in chosen  # needs torch at build time: verl's images or --no-build-isolation
