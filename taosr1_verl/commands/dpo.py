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
    out, history = run_dpo(recipe)
    losses = [h["loss"] for h in history if "loss" in h]
    print(json.dumps({"output_dir": str(out), "steps": len(losses), "first_loss": losses[0] if losses else None,
                      "last_loss": losses[-1] if losses else None}))
    return 0
