"""``taosr1 recipe``: validate, run (here, CPU or GPU) or submit (Ray cluster) a verl recipe.

A recipe is ``sft`` or ``grpo`` (shipped in :mod:`taosr1_verl.recipes`) or the path of a user's own YAML
that extends one of them. ``run`` validates first (``--no-validate`` skips it), then runs the trainer as a
subprocess here, or submits it as a Ray job with ``--submit http://HEAD:8265``.
"""

from __future__ import annotations

import argparse
import sys

from taosr1_verl.integrations.verl.recipes import DEVICES, RECIPES

RECIPE_HELP = f"{', '.join(RECIPES)}, or the path of your own recipe YAML that extends one of them"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipe", help="validate, run or submit the verl recipes (sft, grpo)")
    actions = p.add_subparsers(dest="recipe_action", metavar="ACTION", required=True)

    v = actions.add_parser("validate", help="compose a recipe with verl's config loader and run verl's checks")
    v.add_argument("--device", choices=DEVICES, default="gpu")
    v.add_argument("--check-paths", action="store_true",
                   help="also check that the model directories and data files exist on this machine")
    v.add_argument("recipe", help=RECIPE_HELP)
    v.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides, key=value (after the options)")
    v.set_defaults(func=_validate)

    r = actions.add_parser("run", help="run a recipe here (CPU runtime with --device cpu), or submit it with --submit")
    add_arguments(r)
    r.set_defaults(func=run_from_args)


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--log", help="append the trainer's log to this file")
    parser.add_argument("--timeout", type=float, help="stop the run after this many seconds")
    parser.add_argument("--nproc-per-node", type=int, default=None,
                        help="SFT: processes (devices) per node (default 1 on cpu, 8 on gpu)")
    parser.add_argument("--submit", metavar="ADDRESS",
                        help="submit to the Ray cluster at ADDRESS (e.g. http://head:8265) as a Ray job")
    parser.add_argument("--no-wait", action="store_true",
                        help="with --submit: return once the job is submitted instead of following its log")
    parser.add_argument("--no-validate", action="store_true", help="skip the validation that runs first")
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The runner's arguments; options may come before or after the Hydra overrides (see :func:`normalize_args`)."""
    parser.add_argument("recipe", help=RECIPE_HELP)
    _add_options(parser)
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides, key=value")


def normalize_args(args: argparse.Namespace) -> argparse.Namespace:
    """Pick options out of ``args.overrides`` (argparse leaves them there when they follow the recipe)."""
    options = argparse.ArgumentParser(add_help=False)
    _add_options(options)
    options.add_argument("overrides", nargs="*")
    ns = options.parse_intermixed_args(list(args.overrides))
    defaults = vars(options.parse_args([]))
    for key, value in vars(ns).items():
        if key == "overrides" or value != defaults[key]:
            setattr(args, key, value)
    return args


def _validate(args: argparse.Namespace, check_paths: bool | None = None) -> int:
    from taosr1_verl.integrations.verl.recipes import compose_recipe, get_recipe, validate_recipe

    check_paths = args.check_paths if check_paths is None else check_paths
    cfg = compose_recipe(args.recipe, args.overrides, device=args.device)
    # With the paths checked, the SFT model config is built from model.path too.
    validate_recipe(args.recipe, cfg, check_model=check_paths, check_paths=check_paths)
    print(f"ok: {get_recipe(args.recipe).where} ({args.device}) passes verl's validation")
    return 0


def run_from_args(args: argparse.Namespace) -> int:
    """Run, submit or print what ``args`` (see :func:`add_arguments`) ask for; returns an exit status."""
    import shlex

    args = normalize_args(args)
    nproc = args.nproc_per_node or (1 if args.device == "cpu" else 8)
    if not (args.dry_run or args.no_validate):
        _validate(args, check_paths=not args.submit)  # a cluster job's paths are the cluster's
    if args.submit:
        from taosr1_verl.integrations.verl.submit import SubmitError, build_job, ray_job_submit_argv, submit

        job = build_job(args.recipe, args.overrides, args.device, nproc_per_node=nproc)
        if args.dry_run:
            print(shlex.join(ray_job_submit_argv(job, args.submit)))
            return 0
        try:
            status = submit(job, args.submit, wait=not args.no_wait)
        except SubmitError as e:
            print(f"taosr1 recipe: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"\nstopped following job {job.submission_id}; it keeps running "
                  f"(ray job stop {job.submission_id} --address={args.submit})", file=sys.stderr)
            return 130
        print(f"job {job.submission_id}: {status}", file=sys.stderr)
        return 0 if status in ("SUCCEEDED", "PENDING", "RUNNING") else 1

    from taosr1_verl.integrations.verl.launch import build_command

    if args.dry_run:
        print(shlex.join(build_command(args.recipe, args.overrides, args.device, nproc)))
        return 0
    from taosr1_verl.integrations.verl.supervise import run_recipe

    result = run_recipe(
        args.recipe, args.overrides, args.device, args.log, args.timeout, nproc,
        echo=lambda line: print(line, flush=True),
    )
    return result.returncode if not result.interrupted else 130
