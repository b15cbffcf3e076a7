"""The ``taosr1`` command. Each stage adds its subcommands from its own module.

A subcommand module exposes ``register(subparsers)``; it must import only light modules at import time
(heavy imports such as torch, verl or vLLM go inside the handler) so that ``taosr1 --help`` stays fast.

Errors: a user's mistake (a bad option, a missing or unreadable file, a file that does not fit) ends the
command with one line ``taosr1 <cmd>: error: <what and where>`` on stderr and exit status 2. Ctrl-C and
SIGTERM run the same cleanup (:func:`taosr1_verl.run_manifest.sigterm_as_interrupt`) and end every command
with one line and 130 / 143; a command that sets ``resumable=True`` in its defaults adds that a rerun
continues. ``taosr1 -v <cmd>`` also prints the traceback. Anything else is a bug and raises.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from taosr1_verl.run_manifest import sigterm_as_interrupt

# One line per stage; keep alphabetical.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "taosr1_verl.commands.ablate",
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
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Each (sub)command parser records its full name (``taosr1 data synth``) as ``args.command_prog``; the
    innermost one that parsed wins."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(command_prog=sub.prog)
                _name_commands(sub)


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
    return run_handler(args)


RESUME_NOTE = "; temporary files removed, a rerun continues from the last finished step"


def run_handler(args: argparse.Namespace) -> int:
    """Run ``args.func(args)``, the parsed subcommand's handler, and turn what a user causes into one line on
    stderr: a mistake (:data:`USER_ERRORS`) exits 2; Ctrl-C and SIGTERM, after the cleanup they trigger (both
    raise ``KeyboardInterrupt``), exit 130 and 143."""
    prog = f"taosr1 {args.command}"
    try:
        with sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except USER_ERRORS as e:
        if args.verbose:
            traceback.print_exc()
        print(f"{prog}: error: {error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        if args.verbose:
            traceback.print_exc()
        term = str(e) == "SIGTERM"
        note = RESUME_NOTE if getattr(args, "resumable", False) else ""
        print(f"{getattr(args, 'command_prog', prog)}: {'terminated' if term else 'interrupted'}{note}",
              file=sys.stderr)
        return 143 if term else 130


if __name__ == "__main__":
    sys.exit(main())
