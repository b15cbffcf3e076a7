"""``taosr1 check``: validate a response file or a tokenizer against a label schema."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check responses against the format contract, or labels against a tokenizer")
    p.add_argument("--schema", default="taosr1", help="label schema preset (taosr1, esci, wands)")
    p.add_argument("--format", default="post_cot", choices=["post_cot", "pre_cot"], help="response format")
    p.add_argument("--tokenizer", help="a local tokenizer directory: check every label is exactly one token")
    p.add_argument("--responses", help="a JSONL file with a 'response' field per line: count malformed ones")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from taosr1_verl.response import make_parser
    from taosr1_verl.schema import get_schema

    schema = get_schema(args.schema)
    if args.tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.tokenizer)
        ids = schema.label_token_ids(tok)
        print(f"ok: every label of {schema.name!r} is one token: {ids}")
    if args.responses:
        parse = make_parser(schema, args.format)
        reasons: Counter[str] = Counter()
        with open(args.responses, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{args.responses}:{lineno}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict) or "response" not in row:
                    raise ValueError(f"{args.responses}:{lineno}: missing field 'response'")
                reasons[parse(row["response"]).error or "ok"] += 1
        json.dump(dict(reasons.most_common()), sys.stdout, indent=1)
        print()
    return 0
