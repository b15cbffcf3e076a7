"""Every recipe composes with verl's own config loading and passes verl's own validation, on both overlays.

GPU runs cannot happen here, so these checks are what makes a broken key fail CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from taosr1_verl.integrations.verl.recipes import RECIPES, RecipeError, compose_recipe, validate_recipe
from taosr1_verl.recipes import recipes_dir

REPO_RECIPES = Path(__file__).resolve().parents[2] / "recipes"

REQUIRED = {
    "grpo": ["data.train_files=/data/train.parquet", "data.val_files=/data/val.parquet"],
    "sft": ["data.train_files=/data/train.parquet"],
}
MODEL_KEY = {"grpo": "actor_rollout_ref.model.path", "sft": "model.path"}


def _overrides(name: str, model: Path | str = "/models/base") -> list[str]:
    return [f"{MODEL_KEY[name]}={model}", *REQUIRED[name]]


@pytest.mark.parametrize("device", ["cpu", "gpu"])
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_composes_and_validates(name, device, tiny_model_dir):
    cfg = compose_recipe(name, _overrides(name, tiny_model_dir), device=device)
    validate_recipe(name, cfg)
    expected = "cpu" if device == "cpu" else "cuda"
    assert cfg.trainer.device == expected


def test_grpo_recipe_carries_the_taosr1_method():
    cfg = compose_recipe("grpo", _overrides("grpo"), device="gpu")
    assert cfg.algorithm.adv_estimator == "grpo"
    assert cfg.actor_rollout_ref.rollout.name == "vllm"
    assert cfg.actor_rollout_ref.actor.use_kl_loss is True
    # dynamic sampling by the TaoSR1 replay buffer and difficulty-aware trainer (verl's filter stays off)
    assert cfg.trainer.v1.trainer_mode == "taosr1_sync"
    assert cfg.trainer.v1.sampler.custom_sampler.name == "TaoSR1ReplayBuffer"
    assert cfg.trainer.v1.sampler.sampler_kwargs.metric == "acc" and cfg.algorithm.filter_groups.enable is False
    rf = cfg.reward.custom_reward_function
    assert rf.path == "pkg://taosr1_verl.rewards" and rf.name == "compute_score"
    # reward options are reachable from the recipe / command line
    cfg2 = compose_recipe("grpo", [*_overrides("grpo"), "reward.custom_reward_function.reward_kwargs.partial_credit=true"])
    assert cfg2.reward.custom_reward_function.reward_kwargs.partial_credit is True
    validate_recipe("grpo", cfg2)


def test_the_cpu_overlay_changes_only_device_settings():
    gpu = compose_recipe("grpo", _overrides("grpo"), device="gpu")
    cpu = compose_recipe("grpo", _overrides("grpo"), device="cpu")
    for key in ("algorithm.adv_estimator", "actor_rollout_ref.rollout.n", "actor_rollout_ref.actor.kl_loss_coef",
                "data.train_batch_size", "reward.custom_reward_function"):
        from omegaconf import OmegaConf

        assert OmegaConf.select(gpu, key) == OmegaConf.select(cpu, key), key
    assert cpu.actor_rollout_ref.actor.strategy == "fsdp2" and cpu.ray_kwargs.ray_init.num_gpus == 1


@pytest.mark.parametrize(
    ("name", "override", "match"),
    [
        ("grpo", "++actor_rollout_ref.actor.ppo_mini_bach_size=4", "ppo_mini_bach_size"),
        ("grpo", "++algorithm.filter_group.enable=true", "filter_group"),
        ("sft", "++engine.strateg=fsdp2", "strateg"),
        ("grpo", "reward.custom_reward_function.reward_kwargs.format=cot_first", "reward_kwargs"),
        ("grpo", "++reward.custom_reward_function.reward_kwargs.malformed_penaltty=-1", "malformed_penaltty"),
        ("grpo", "reward.custom_reward_function.name=no_such_function", "does not load"),
        ("grpo", "actor_rollout_ref.actor.ppo_micro_batch_size=4", "verl rejects"),  # and the per-GPU one
        ("grpo", "data.train_batch_size=8", "verl rejects"),  # fewer prompts than one mini-batch
        ("grpo", "trainer.v1.sampler.custom_sampler.path=pkg://taosr1_verl.no_such_module", "custom_sampler"),
        ("grpo", "trainer.v1.trainer_mode=taosr1_no_such_mode", "trainer_mode"),
        ("sft", "data.label_weight=0", "label_weight must be a number > 0"),
        ("sft", "data.label_weight=20 data.custom_cls.path=null", "read only by LabelWeightedSFTDataset"),
        ("sft", "data.label_weight=20 data.pad_mode=right", "needs data.pad_mode=no_padding"),
        ("sft", "data.custom_cls.name=NoSuchDataset", "data.custom_cls"),
        # Values verl accepted and a trainer would choke on (or silently use) later:
        ("grpo", "actor_rollout_ref.actor.optim.lr=fast", r"actor.optim.lr='fast' \(expected a number"),
        ("grpo", "actor_rollout_ref.rollout.n=-3", r"rollout.n=-3 \(expected a positive integer"),
        ("grpo", "actor_rollout_ref.rollout.n=1", "GRPO compares the responses of a group"),
        ("grpo", "data.train_batch_size=abc", r"data.train_batch_size='abc' \(expected a positive integer"),
        ("grpo", "actor_rollout_ref.rollout.temperature=hot", "rollout.temperature='hot'"),
        ("grpo", "actor_rollout_ref.rollout.top_p=0", r"top_p=0 \(expected a number in \(0, 1\]"),
        ("grpo", "actor_rollout_ref.actor.ppo_epochs=1.5", "ppo_epochs=1.5"),
        ("grpo", "trainer.total_epochs=0", "trainer.total_epochs=0"),
        ("grpo", "actor_rollout_ref.rollout.enforce_eager=maybe", r"enforce_eager='maybe' \(expected true or false"),
        ("grpo", "reward.custom_reward_function.reward_kwargs.malformed_penalty=abc",
         "malformed_penalty must be a number, got 'abc'"),
        ("grpo", "reward.custom_reward_function.reward_kwargs.malformed_penalty=1", "not subtracted"),
        ("grpo", "custom_reward_function.path=pkg://taosr1_verl.rewards",
         "custom_reward_function.path -> reward.custom_reward_function.path"),
        ("grpo", "reward_model.reward_manager=dapo", "reward_model.reward_manager -> reward.reward_manager.name"),
        ("sft", "optim.lr=fast", "optim.lr='fast'"),
        ("sft", "data.micro_batch_size_per_gpu=0", "data.micro_batch_size_per_gpu=0"),
    ],
)
def test_a_broken_key_or_value_fails(name, override, match):
    extra = override.split(" ")
    if "custom_sampler.path" in override:
        extra.append("trainer.v1.sampler.custom_sampler.name=X")
    cfg = compose_recipe(name, [*_overrides(name), *extra], device="cpu")
    with pytest.raises(RecipeError, match=match):
        validate_recipe(name, cfg, check_model=False)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_paths_are_checked_for_local_runs(name, tiny_model_dir, tmp_path):
    """check_paths: a missing model directory or data file fails validation (off: the paths are a cluster's)."""
    data = tmp_path / "train.parquet"
    data.write_bytes(b"")
    good = [f"{MODEL_KEY[name]}={tiny_model_dir}", f"data.train_files={data}"]
    if name == "grpo":
        good.append(f"data.val_files={data}")
    validate_recipe(name, compose_recipe(name, good, device="cpu"), check_model=False, check_paths=True)
    bad = [f"{MODEL_KEY[name]}={tmp_path / 'no_model'}", f"data.train_files=[{data},{tmp_path / 'gone.parquet'}]"]
    cfg = compose_recipe(name, [*good, *bad], device="cpu")
    with pytest.raises(RecipeError) as e:
        validate_recipe(name, cfg, check_model=False, check_paths=True)
    assert f"{MODEL_KEY[name]}={tmp_path / 'no_model'} (no such model directory)" in str(e.value)
    assert f"data.train_files={tmp_path / 'gone.parquet'} (no such file)" in str(e.value)
    validate_recipe(name, cfg, check_model=False, check_paths=False)


def test_recipe_cli_checks_paths_before_a_local_run(tmp_path, monkeypatch, capsys):
    """`recipe run` validates with the paths checked and starts nothing; `validate --check-paths` says the same."""
    from taosr1_verl.cli import main

    def started(*args, **kwargs):
        raise AssertionError("the trainer was started")

    monkeypatch.setattr("taosr1_verl.integrations.verl.supervise.run_recipe", started)
    overrides = [f"model.path={tmp_path / 'no_model'}", f"data.train_files={tmp_path / 't.parquet'}"]
    assert main(["recipe", "run", "sft", "--device", "cpu", *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such model directory" in err[0] and "t.parquet (no such file)" in err[0]
    assert main(["recipe", "validate", "--check-paths", "sft", *overrides]) == 2
    assert "no such model directory" in capsys.readouterr().err
    assert main(["recipe", "validate", "sft", *overrides]) == 0


def test_a_missing_required_value_fails():
    cfg = compose_recipe("grpo", ["data.train_files=/t", "data.val_files=/v"], device="cpu")
    with pytest.raises(RecipeError, match="actor_rollout_ref.model.path"):
        validate_recipe("grpo", cfg)


def test_an_unknown_key_on_the_command_line_fails_at_composition():
    with pytest.raises(RecipeError, match="grpo.yaml"):
        compose_recipe("grpo", [*_overrides("grpo"), "actor_rollout_ref.actor.no_such_key=1"])


def test_every_recipe_field_has_a_comment_above_it():
    """Project rule: a comment above every field of every recipe and overlay."""
    files = sorted(recipes_dir().rglob("*.yaml")) + sorted(REPO_RECIPES.glob("*.yaml"))
    assert any(f.name == "grpo.yaml" for f in files) and any(f.name == "my_grpo.yaml" for f in files)
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        yaml.safe_load("\n".join(lines))  # valid YAML
        for i, line in enumerate(lines):
            stripped = line.strip()
            if not stripped or stripped.startswith(("#", "-")) or stripped == "{}" or ":" not in stripped:
                continue
            prev = next((p.strip() for p in reversed(lines[:i]) if p.strip()), "")
            assert prev.startswith("#"), f"{path}:{i + 1}: no comment above {stripped!r}"


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_a_users_own_recipe_file_extends_ours_and_validates(device, tiny_model_dir):
    """recipes/my_grpo.yaml: verl's stock ppo_trainer with our reward, buffer and trainer named by pkg://."""
    path = str(REPO_RECIPES / "my_grpo.yaml")
    cfg = compose_recipe(path, _overrides("grpo", tiny_model_dir), device=device)
    validate_recipe(path, cfg, check_model=False)
    assert cfg.reward.custom_reward_function.path == "pkg://taosr1_verl.rewards"
    assert cfg.trainer.v1.trainer_mode == "taosr1_sync"
    assert (cfg.trainer.device == "cpu") == (device == "cpu")
    with pytest.raises(RecipeError, match="my_grpo.yaml"):
        compose_recipe(path, [*_overrides("grpo"), "actor_rollout_ref.actor.no_such_key=1"])
