"""``taosr1 ablate``: TaoSR1's ablation (label-only / pre-CoT / post-CoT SFT, + DPO, + GRPO variants) over seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from taosr1_verl.commands.args import input_file, output_dir


def _teacher_errors(text: str) -> str:
    """``none`` (the perfect rule teacher) or a teacher-errors YAML file."""
    return "none" if text.lower() == "none" else input_file(text)


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seeds like 0,1,2") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: expected distinct seeds >= 0 like 0,1,2")
    return seeds


def _rows(text: str) -> tuple[str, ...]:
    from taosr1_verl.pipeline.ablate import check_rows

    try:
        return check_rows([r.strip() for r in text.split(",") if r.strip()])
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(sub: argparse._SubParsersAction) -> None:
    from taosr1_verl.pipeline.ablate import PROFILES, ROW_IDS

    p = sub.add_parser(
        "ablate",
        help="measure what each TaoSR1 stage adds (synthetic catalog, imperfect teacher, several seeds)",
        description="Trains and evaluates the ablation rows (" + ", ".join(ROW_IDS) + ") for every seed, "
                    "sharing stages across rows (one SFT, pass@N and DPO serve every GRPO row of a seed), and "
                    "writes ablation.md/.json/.png: mean and spread over seeds, the paper's figures beside them, "
                    "and each step of the paper's order checked on paired differences (> 2 standard errors). "
                    "A rerun resumes: completed stages are skipped.",
    )
    p.add_argument("--run-dir", type=output_dir, default="runs/ablate",
                   help="where each seed's stages and the table go (default: runs/ablate)")
    p.add_argument("--profile", choices=tuple(PROFILES), default="full",
                   help="'full': 3 seeds, the README's table (about 70 min of stage time on 2 idle cores); 'long': "
                        "the same with 5,000 SFT steps (about 2 h); 'micro': one seed, tiny sizes (CI check of the "
                        "runner, a few minutes)")
    p.add_argument("--rows", type=_rows, default=None,
                   help=f"comma-separated rows to run (default: all of {','.join(ROW_IDS)})")
    p.add_argument("--seeds", type=_seeds, default=None, help="comma-separated seeds (default: the profile's)")
    p.add_argument("--teacher-errors", type=_teacher_errors, default=None, metavar="PATH|none",
                   help="the SFT teacher's error model: a YAML like taosr1_verl/data/synth/teacher_errors.yaml "
                        "(the default), or 'none' for the perfect rule teacher")
    p.add_argument("--report-only", action="store_true",
                   help="write the table from the stages completed so far; train nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from taosr1_verl.pipeline.ablate import PROFILES, ROW_IDS, run_ablation, write_table

    run_dir = Path(args.run_dir)
    rows = args.rows or ROW_IDS
    seeds = args.seeds or PROFILES[args.profile].seeds
    if args.report_only:
        result = write_table(run_dir, args.profile, rows, seeds, args.teacher_errors)
    else:
        result = run_ablation(run_dir, args.profile, rows, seeds, args.teacher_errors)
    print(f"table: {run_dir / 'ablation.md'}" + ("" if result["complete"] else
          f" (partial: {len(result['missing'])} row(s) x seed(s) not evaluated yet)"))
    return 0
