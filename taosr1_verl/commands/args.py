"""What the subcommands share: argparse types that check files and numbers while the command line is parsed,
before any work starts, and the arguments several commands take (with their choices read from the modules
that own them).

A bad value ends the command with one line (``taosr1 score: error: argument --output: runs is a
directory; give a file name``) instead of a traceback after minutes of scoring.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from taosr1_verl.config_types import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, UNIT, Bound

__all__ = ["add_format_arg", "add_instructions_arg", "add_scorer_args", "fraction", "input_file", "input_file_or_stdin",
           "make_scorer_from_args", "non_negative_float", "non_negative_int", "output_dir", "output_file",
           "output_file_or_stdout", "parquet_file", "positive_float", "positive_int", "unit_float"]


def _fail(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def input_file(text: str) -> str:
    """An existing, readable regular file."""
    path = Path(text).expanduser()
    if not path.exists():
        raise _fail(f"{text}: no such file")
    if path.is_dir():
        raise _fail(f"{text}: is a directory; give a file")
    if not os.access(path, os.R_OK):
        raise _fail(f"{text}: not readable (permission denied)")
    return str(path)


def input_file_or_stdin(text: str) -> str:
    """``-`` (standard input) or :func:`input_file`."""
    return text if text == "-" else input_file(text)


def parquet_file(text: str) -> str:
    """An :func:`input_file` whose footer parquet can read (a CSV renamed ``.parquet`` is named here)."""
    path = input_file(text)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pq.ParquetFile(path).close()
    except (pa.ArrowException, OSError) as e:
        raise _fail(f"{text}: not a parquet file ({e})") from None
    return path


def _check_parents(path: Path, text: str) -> None:
    """Every existing ancestor of ``path`` must be a directory, and the nearest one writable."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise _fail(f"{text}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise _fail(f"{text}: cannot write in {parent} (permission denied)")
            return


def output_dir(text: str) -> str:
    """A directory to write into: an existing directory, or a path that can be created."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise _fail(f"{text}: exists and is not a directory")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise _fail(f"{text}: cannot write in it (permission denied)")
    _check_parents(path, text)
    return str(path)


def output_file(text: str) -> str:
    """A file to write: not a directory, in a directory that exists or can be created."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise _fail(f"{text}: is a directory; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise _fail(f"{text}: not writable (permission denied)")
    _check_parents(path, text)
    return str(path)


def output_file_or_stdout(text: str) -> str:
    """``-`` (standard output) or :func:`output_file`."""
    return text if text == "-" else output_file(text)


def bounded(bound: Bound) -> Callable[[str], int | float]:
    """An argparse type for a number within ``bound`` (``"expected a positive integer, got 0"``)."""

    def parse(text: str) -> int | float:
        try:
            value = bound.kind(text)
        except ValueError:
            raise _fail(f"expected {bound.describe()}, got {text!r}") from None
        if not bound.accepts(value):
            raise _fail(f"expected {bound.describe()}, got {text}")
        return value

    parse.__name__ = f"bounded_{bound.kind.__name__}"
    return parse


positive_int = bounded(COUNT)
"""An int >= 1 (``--per-class 0`` would build an empty RL set; ``-n 0`` samples nothing)."""
non_negative_int = bounded(Bound(int, 0))
positive_float = bounded(POSITIVE)
non_negative_float = bounded(NON_NEGATIVE)
unit_float = bounded(UNIT)
"""A number in [0, 1] (thresholds)."""
fraction = bounded(FRACTION)
"""A number in (0, 1] (top-p, fractions of a budget)."""


# ---- arguments several commands take ----------------------------------------------------------------------


def add_format_arg(p: argparse.ArgumentParser, help: str = "response format") -> None:
    """``--format {post_cot,pre_cot}``: the response format (:data:`taosr1_verl.response.FORMATS`)."""
    from taosr1_verl.response import FORMATS

    p.add_argument("--format", default="post_cot", choices=FORMATS, help=help)


def add_instructions_arg(p: argparse.ArgumentParser) -> None:
    """``--instructions {full,compact,none}`` (and ``--compact`` for ``--instructions compact``): how much of
    the task the prompts' system message spells out. Training and serving must use the same."""
    from taosr1_verl.prompts import INSTRUCTIONS

    p.add_argument("--instructions", choices=INSTRUCTIONS, default="full",
                   help="system message: full, compact (one line, small models) or none (a model trained from "
                        "scratch on this task)")
    p.add_argument("--compact", dest="instructions", action="store_const", const="compact",
                   help="same as --instructions compact")


def add_scorer_args(p: argparse.ArgumentParser) -> None:
    """Model and first-token scoring backend options (``score`` and ``eval``); see :func:`make_scorer_from_args`."""
    from taosr1_verl.scoring.registry import SCORERS

    p.add_argument("--model", required=True, help="local model directory (for --backend openai: its tokenizer)")
    p.add_argument("--backend", default="hf", choices=SCORERS.names, help="scoring engine")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint for --backend openai, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--schema", default="taosr1", help="label schema preset (taosr1, esci, wands)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="items per forward pass / request")
    p.add_argument("--block-size", type=positive_int, default=32,
                   help="vLLM KV block size (prefix caching reuses whole blocks)")


def make_scorer_from_args(args: argparse.Namespace):
    """The scorer :func:`add_scorer_args`' options ask for (a context manager: it frees its engine on exit)."""
    from taosr1_verl.scoring.registry import make_scorer

    return make_scorer(args.backend, args.model, args.schema, base_url=args.base_url, batch_size=args.batch_size,
                       block_size=args.block_size)
