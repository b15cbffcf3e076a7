"""DPO through the real TRL DPOTrainer on a tiny offline Qwen2, from the shipped dpo.yaml via the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taosr1_verl.cli import main
from taosr1_verl.integrations.trl.dpo import load_recipe
from taosr1_verl.pairs.io import write_pairs
from taosr1_verl.pairs.rule import PromptGroup, build_pairs
from taosr1_verl.prompts import PromptConfig, build_messages
from taosr1_verl.recipes import recipe_file
from taosr1_verl.response import format_response
from taosr1_verl.rewards import score_batch

RECIPE = recipe_file("dpo")


def test_recipe_defaults_and_errors(tmp_path: Path) -> None:
    r = load_recipe(RECIPE, ["model_path=m", "train_file=t.parquet", "output_dir=o", "trl_args.max_grad_norm=0.5"])
    assert (r.beta, r.loss_type, r.ref_model_path, r.trl_args) == (0.1, "sigmoid", None, {"max_grad_norm": 0.5})
    with pytest.raises(ValueError, match="missing required keys"):
        load_recipe(RECIPE)
    with pytest.raises(ValueError, match="unknown DPO recipe keys"):
        load_recipe(RECIPE, ["model_path=m", "train_file=t", "output_dir=o", "betta=1"])
    assert r.sft_weight == 0.0
    with pytest.raises(ValueError, match="sft_weight must be >= 0"):
        load_recipe(RECIPE, ["model_path=m", "train_file=t", "output_dir=o", "sft_weight=-1"])
    with pytest.raises(ValueError, match="not trl_args.loss_type"):
        load_recipe(RECIPE, ["model_path=m", "train_file=t", "output_dir=o", "trl_args.loss_type=[sft]"])
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_recipe(RECIPE, ["model_path=m", "train_file=t", "output_dir=o", "trl_args.trust_remote_code=true"])


@pytest.mark.slow
@pytest.mark.parametrize("sft_weight", [0.0, 1.0])
def test_dpo_cli_trains_and_the_loss_moves(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           sft_weight: float) -> None:
    import torch
    from safetensors.torch import load_file

    from taosr1_verl.models.tiny import build_tiny_qwen2

    compact = PromptConfig(instructions="compact")
    groups = []
    for i, q in enumerate(["red oak table", "sofa", "lamp", "rug", "desk", "chair", "bed", "shelf"]):
        rs = [format_response("4", "exact match"), format_response("1", "unrelated item")]
        groups.append(PromptGroup(i, build_messages(q, "Oak table", config=compact), "4", rs, score_batch(rs, ["4", "4"])))
    pairs, rep = build_pairs(groups)
    assert rep.outcomes["paired_self"] == 8
    write_pairs(pairs, tmp_path / "pairs.parquet")
    corpus = [m["content"] for g in groups for m in g.prompt] + groups[0].responses
    sft = build_tiny_qwen2(tmp_path / "sft", corpus * 10)
    out = tmp_path / "dpo"
    assert main(["dpo", f"model_path={sft}", f"train_file={tmp_path / 'pairs.parquet'}",
                 f"output_dir={out}", "learning_rate=0.01", f"sft_weight={sft_weight}", "max_steps=6", "logging_steps=1", "warmup_steps=0",
                 "lr_scheduler_type=constant", "use_cpu=true"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 6
    if sft_weight == 0:
        assert summary["first_loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 0
    else:  # log 2 plus the chosen answers' NLL (an untrained model: several nats per token)
        assert summary["first_loss"] > 0.6931 + 1.0
    assert summary["last_loss"] < summary["first_loss"] - 0.05
    # The output is a plain HF checkpoint (what verl's GRPO recipe loads), with changed weights.
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
    new, old = load_file(out / "model.safetensors"), load_file(sft / "model.safetensors")
    assert any(not torch.equal(new[k], old[k]) for k in old)


def test_trl_optional_package_checks_answer_with_bools_after_the_fix():
    """TRL 0.27 (verl's GPU pin) with transformers 5 gets tuples from these checks, always true, and then
    imports packages that are absent; after the fix every check is a bool on any TRL."""
    import trl.import_utils as iu

    from taosr1_verl.integrations.trl.compat import fix_optional_import_checks

    fix_optional_import_checks()
    checks = [getattr(iu, n) for n in dir(iu) if n.startswith("is_") and n.endswith("_available")]
    assert checks and all(isinstance(c(), bool) for c in checks if c.__code__.co_argcount == 0 or c.__defaults__)
    assert fix_optional_import_checks() is False  # idempotent
