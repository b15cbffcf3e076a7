"""``taosr1 score``: tiers and label probabilities for (query, item) pairs from a file or stdin."""

from __future__ import annotations

import argparse

from taosr1_verl.commands.args import input_file_or_stdin, output_file_or_stdout, positive_int, unit_float


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """Model/backend options shared by ``score`` and ``eval``."""
    p.add_argument("--model", required=True, help="local model directory (for --backend openai: its tokenizer)")
    p.add_argument("--backend", default="hf", choices=["hf", "vllm", "openai"], help="scoring engine")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint for --backend openai, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--schema", default="taosr1", help="label schema preset (taosr1, esci, wands)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="items per forward pass / request")
    p.add_argument("--block-size", type=positive_int, default=32,
                   help="vLLM KV block size (prefix caching reuses whole blocks)")


def make_scorer_from_args(args: argparse.Namespace):
    from taosr1_verl.scoring.base import make_scorer

    extra = {"block_size": args.block_size} if args.backend == "vllm" else {}
    return make_scorer(args.backend, args.model, args.schema, base_url=args.base_url,
                       batch_size=args.batch_size, **extra)


def register(sub: argparse._SubParsersAction) -> None:
    from taosr1_verl.commands.data import add_instructions_arg

    p = sub.add_parser("score", help="first-token label probabilities + CumPT tiers for (query, item) pairs")
    add_backend_args(p)
    p.add_argument("--input", type=input_file_or_stdin, default="-", help="JSONL/CSV/TSV file, or - for JSONL on stdin")
    p.add_argument("--input-format", choices=["jsonl", "csv", "tsv"], help="default: from the file suffix")
    p.add_argument("--output", type=output_file_or_stdout, default="-",
                   help="JSONL output file (written atomically), or - for stdout")
    p.add_argument("--beta", type=unit_float, default=0.5, help="CumPT threshold (calibrate it with `taosr1 eval`)")
    p.add_argument("--format", default="post_cot", choices=["post_cot", "pre_cot"], help="prompt's answer format")
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
        for r, s in zip(rows, ids, strict=True):
            if scorer.max_prompt_tokens is not None and len(s) > scorer.max_prompt_tokens:
                raise ValueError(f"{r.where}: prompt has {len(s)} tokens, more than the model's "
                                 f"{scorer.max_prompt_tokens}; lower --max-chars or shorten the text")
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
