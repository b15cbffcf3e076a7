"""``taosr1 score``: tiers and label probabilities for (query, item) pairs from a file or stdin."""

from __future__ import annotations

import argparse

from taosr1_verl.commands.args import (
    add_format_arg,
    add_instructions_arg,
    add_scorer_args,
    input_file_or_stdin,
    make_scorer_from_args,
    output_file_or_stdout,
    positive_int,
    unit_float,
)


def register(sub: argparse._SubParsersAction) -> None:
    from taosr1_verl.scoring.io import INPUT_FORMATS

    p = sub.add_parser("score", help="first-token label probabilities + CumPT tiers for (query, item) pairs")
    add_scorer_args(p)
    p.add_argument("--input", type=input_file_or_stdin, default="-", help="JSONL/CSV/TSV file, or - for JSONL on stdin")
    p.add_argument("--input-format", choices=INPUT_FORMATS, help="default: from the file suffix")
    p.add_argument("--output", type=output_file_or_stdout, default="-",
                   help="JSONL output file (written atomically), or - for stdout")
    p.add_argument("--beta", type=unit_float, default=0.5, help="CumPT threshold (calibrate it with `taosr1 eval`)")
    add_format_arg(p, "prompt's answer format")
    add_instructions_arg(p)
    p.add_argument("--max-chars", type=positive_int, default=5000, help="reject input fields longer than this")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from taosr1_verl.files import atomic_write_bytes
    from taosr1_verl.prompts import PromptConfig, build_messages
    from taosr1_verl.scoring.cumpt import cumpt_levels
    from taosr1_verl.scoring.io import read_score_input

    source = sys.stdin if args.input == "-" else args.input
    rows = read_score_input(source, args.input_format, args.max_chars)
    if not rows:
        raise ValueError(f"{args.input}: no (query, item) rows")
    config = PromptConfig(instructions=args.instructions)
    msgs = []
    for r in rows:
        try:
            msgs.append(build_messages(r.query, r.title, r.attributes, r.description, schema=args.schema,
                                       fmt=args.format, config=config))
        except ValueError as e:
            raise ValueError(f"{r.where}: {e}") from None
    with make_scorer_from_args(args) as scorer:
        ids = scorer.render(msgs)
        scorer.check_ids(ids, where=[r.where for r in rows], hint="lower --max-chars or shorten the text")
        probs = scorer.score_ids(ids, groups=[r.query for r in rows], progress=True)
        schema = scorer.schema
    levels = cumpt_levels(probs, args.beta, schema)
    lines = []
    for r, p, lv in zip(rows, probs.tolist(), levels.tolist(), strict=True):
        lines.append(json.dumps({"where": r.where, "query": r.query, "title": r.title, "level": lv,
                                 "tier": schema.tier_of(lv), "label": schema.by_level(lv).label,
                                 "probs": {lab: round(x, 6) for lab, x in zip(schema.labels, p, strict=True)}},
                                ensure_ascii=False))
    text = "\n".join(lines) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        atomic_write_bytes(Path(args.output), text.encode())
        print(f"scored {len(rows)} items -> {args.output}", file=sys.stderr)
    return 0
