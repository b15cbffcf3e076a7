"""The ``taosr1`` command. Each stage adds its subcommands from its own module.

A subcommand module exposes ``register(subparsers)``; it must import only light modules at import time
(heavy imports such as torch, verl or vLLM go inside the handler) so that ``taosr1 --help`` stays fast.

Errors: a user's mistake (a bad option, a missing or unreadable file, a file that does not fit) ends the
command with one line ``taosr1 <cmd>: error: <what and where>`` on stderr and exit status 2; Ctrl-C ends it
with one line and 130. ``taosr1 -v <cmd>`` also prints the traceback. Anything else is a bug and raises.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
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

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)
"""What a user can cause and fix: bad values (``UserError``, ``RecipeError``, ``UnicodeDecodeError``, pyarrow's
``ArrowInvalid`` are all ``ValueError``) and files (missing, a directory, no permission, a dead endpoint)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (``taosr1 score: error: argument --input: ...``), no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from taosr1_verl import __version__

    parser = ArgumentParser(
        prog="taosr1",
        description="TaoSR1 relevance modelling on verl: data, SFT, pass@N + DPO, GRPO, evaluation, serving.",
    )
    parser.add_argument("--version", action="version", version=f"taosr1-verl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def error_message(e: BaseException) -> str:
    """One line for ``e``: an ``OSError`` as ``<file>: <reason>`` (not ``[Errno 2] ...``), newlines folded."""
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        text = f"{e.filename}: {e.strerror}" + (f" (-> {e.filename2})" if e.filename2 else "")
    elif isinstance(e, UnicodeDecodeError):
        text = f"not valid {e.encoding} text (byte {e.start}: {e.reason})"
    else:
        text = str(e) or type(e).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    prog = f"taosr1 {args.command}"
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        if args.verbose:
            traceback.print_exc()
        print(f"{prog}: error: {error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.verbose:
            traceback.print_exc()
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
