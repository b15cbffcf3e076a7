"""``taosr1 recipe``: validate, run (locally, CPU or GPU) or submit (Ray cluster) a verl recipe."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipe", help="validate, run or submit the verl recipes (sft, grpo)")
    actions = p.add_subparsers(dest="recipe_action", metavar="ACTION", required=True)

    v = actions.add_parser("validate", help="compose a recipe with verl's config loader and run verl's checks")
    v.add_argument("--device", choices=["cpu", "gpu"], default="gpu")
    v.add_argument("recipe", choices=["sft", "grpo"])
    v.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides, key=value (after the options)")
    v.set_defaults(func=_validate)

    r = actions.add_parser("run", help="run a recipe here (CPU runtime with --device cpu), or submit it with --submit")
    from taosr1_verl.integrations.verl.launch import add_arguments

    add_arguments(r)
    r.set_defaults(func=_run)


def _validate(args: argparse.Namespace) -> int:
    from taosr1_verl.integrations.verl.recipes import compose_recipe, validate_recipe

    cfg = compose_recipe(args.recipe, args.overrides, device=args.device)
    validate_recipe(args.recipe, cfg, check_model=False)
    print(f"ok: recipes/{args.recipe}.yaml ({args.device}) passes verl's validation")
    return 0


def _run(args: argparse.Namespace) -> int:
    from taosr1_verl.integrations.verl.launch import run_from_args

    return run_from_args(args)
