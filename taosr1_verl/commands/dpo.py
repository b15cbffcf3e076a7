"""``taosr1 dpo``: DPO on pass@N pairs with TRL, from a recipe (the shipped ``dpo.yaml`` unless ``--config``)."""

from __future__ import annotations

import argparse
import json

from taosr1_verl.commands.args import input_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dpo", help="DPO training with TRL's DPOTrainer (reference = the SFT model)")
    p.add_argument("--config", type=input_file, default=None,
                   help="DPO recipe YAML (default: the dpo.yaml shipped in taosr1_verl.recipes)")
    p.add_argument("overrides", nargs="*", help="recipe overrides key=value (trl_args.KEY=VALUE for DPOConfig)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from taosr1_verl.integrations.trl.dpo import load_recipe, run_dpo
    from taosr1_verl.recipes import recipe_file

    recipe = load_recipe(args.config or recipe_file("dpo"), args.overrides)
    _check_paths(recipe)  # before run_dpo imports torch, transformers and TRL (about 20 s)
    out, history = run_dpo(recipe)
    losses = [h["loss"] for h in history if "loss" in h]
    print(json.dumps({"output_dir": str(out), "steps": len(losses), "first_loss": losses[0] if losses else None,
                      "last_loss": losses[-1] if losses else None}))
    return 0


def _check_paths(recipe) -> None:
    from pathlib import Path

    from taosr1_verl.errors import UserError
    from taosr1_verl.models.load import looks_like_path

    for key in ("model_path", "ref_model_path"):
        path = getattr(recipe, key)
        if path and looks_like_path(path) and not Path(path).expanduser().exists():
            raise UserError(f"{key}={path}: no such model directory")
    for key in ("train_file", "eval_file"):
        path = getattr(recipe, key)
        if path and not Path(path).is_file():
            raise UserError(f"{key}={path}: no such file")
