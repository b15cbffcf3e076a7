"""The ``taosr1`` command. Each stage adds its subcommands from its own module.

A subcommand module exposes ``register(subparsers)``; it must import only light modules at import time
(heavy imports such as torch, verl or vLLM go inside the handler) so that ``taosr1 --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# One line per stage; keep alphabetical.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "taosr1_verl.commands.autofas",
    "taosr1_verl.commands.check",
    "taosr1_verl.commands.data",
    "taosr1_verl.commands.demo",
    "taosr1_verl.commands.dpo",
    "taosr1_verl.commands.eval",
    "taosr1_verl.commands.pairs",
    "taosr1_verl.commands.recipe",
    "taosr1_verl.commands.score",
)


def build_parser() -> argparse.ArgumentParser:
    from taosr1_verl import __version__

    parser = argparse.ArgumentParser(
        prog="taosr1",
        description="TaoSR1 relevance modelling on verl: data, SFT, pass@N + DPO, GRPO, evaluation, serving.",
    )
    parser.add_argument("--version", action="version", version=f"taosr1-verl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        # Input problems: a clear one-line message, not a traceback.
        print(f"taosr1 {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
