"""``taosr1 eval``: metrics of a model on a labelled eval parquet, first-token (CumPT) and/or generate mode,
written as report.md + report.json + PNG plots + predictions.jsonl."""

from __future__ import annotations

import argparse

from taosr1_verl.commands.args import (
    add_format_arg,
    add_scorer_args,
    make_scorer_from_args,
    output_dir,
    parquet_file,
    positive_int,
    unit_float,
)


def modes_list(text: str) -> list[str]:
    """argparse type: a comma list of evaluation modes."""
    from taosr1_verl.evaluation.run import MODES

    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"unknown evaluation mode(s) {bad or [text]}; choose from {', '.join(MODES)}")
    return modes


def register(sub: argparse._SubParsersAction) -> None:
    from taosr1_verl.evaluation.calibration import CALIBRATION_METRICS

    p = sub.add_parser("eval", help="evaluate a model: macro-F1, tiers, false positives, CumPT calibration")
    add_scorer_args(p)
    p.add_argument("--data", required=True, type=parquet_file,
                   help="eval parquet (RL layout: prompt, reward_model.ground_truth)")
    p.add_argument("--out", required=True, type=output_dir, help="output directory for the report")
    p.add_argument("--modes", type=modes_list, default="first_token", help="comma list of first_token, generate")
    p.add_argument("--beta", type=unit_float, help="CumPT threshold; default: calibrated on this data (in-sample)")
    p.add_argument("--metric", default="tier_macro_f1", choices=tuple(CALIBRATION_METRICS),
                   help="what beta calibration maximises")
    add_format_arg(p, "response format (generate)")
    p.add_argument("--max-new-tokens", type=positive_int, default=256, help="generate mode: response length limit")
    p.add_argument("--limit", type=positive_int, help="evaluate only the first N rows")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from taosr1_verl.evaluation.run import evaluate_to_dir

    if "generate" in args.modes and args.backend == "openai":
        raise ValueError("--modes generate needs --backend hf or vllm (the openai backend only scores)")
    with make_scorer_from_args(args) as scorer:
        res = evaluate_to_dir(args.data, scorer, args.out, modes=args.modes, beta=args.beta,
                              calibration_metric=args.metric, fmt=args.format,
                              max_new_tokens=args.max_new_tokens, limit=args.limit, model_name=args.model)
    for name, m in res["metrics"].items():
        print(f"{name}: macro_f1={m['macro_f1']:.4f} tier_macro_f1={m['tier_macro_f1']:.4f} "
              f"fp_rate={m['false_positive_rate']:.4f} format_errors={m['format_error_rate']:.4f}")
    print(f"report: {res['paths']['markdown']}")
    return 0
