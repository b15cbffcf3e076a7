"""``taosr1 check``: validate a response file or a tokenizer against a label schema."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from taosr1_verl.commands.args import add_format_arg, input_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check responses against the format contract, or labels against a tokenizer")
    p.add_argument("--schema", default="taosr1", help="label schema preset (taosr1, esci, wands)")
    add_format_arg(p)
    p.add_argument("--tokenizer", help="a local tokenizer directory: check every label is exactly one token")
    p.add_argument("--responses", type=input_file,
                   help="a JSONL file with a 'response' field per line: count malformed ones")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from taosr1_verl.files import iter_jsonl
    from taosr1_verl.response import make_parser
    from taosr1_verl.schema import get_schema

    schema = get_schema(args.schema)
    if not (args.tokenizer or args.responses):
        raise ValueError("nothing to check: give --tokenizer and/or --responses")
    if args.tokenizer:
        from taosr1_verl.models.load import load_tokenizer

        tok = load_tokenizer(args.tokenizer)
        ids = schema.label_token_ids(tok)
        print(f"ok: every label of {schema.name!r} is one token: {ids}")
    if args.responses:
        parse = make_parser(schema, args.format)
        reasons: Counter[str] = Counter()
        for lineno, row in iter_jsonl(args.responses):
            if "response" not in row:
                raise ValueError(f"{args.responses}:{lineno}: missing field 'response'")
            reasons[parse(row["response"]).error or "ok"] += 1
        json.dump(dict(reasons.most_common()), sys.stdout, indent=1)
        print()
    return 0
