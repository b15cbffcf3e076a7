"""The response format contract, and its parser.

``post_cot`` (default, TaoSR1's "label first"):

.. code-block:: text

    4
    <think>
    query asks for ...; the item is ...; verdict: Excellent.
    </think>

Optional whitespace around the whole response; the FIRST line is exactly one label string of the schema;
then exactly one ``<think>`` ... ``</think>`` block with non-empty reasoning; nothing but whitespace after
``</think>``.

``pre_cot`` (the paper's reasoning-first ablation): exactly one ``<think>`` ... ``</think>`` block first,
then the label string alone on the last line.

Everything else is malformed, with a short machine-readable reason. Model output is untrusted: the parser
never raises, never evaluates anything, and runs in time linear in the text (a few C-level string scans),
so a megabyte of garbage costs well under a millisecond per scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from taosr1_verl.schema import LabelSchema, get_schema

ResponseFormat = Literal["post_cot", "pre_cot"]
FORMATS: tuple[str, ...] = ("post_cot", "pre_cot")

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass(frozen=True, slots=True)
class ParsedResponse:
    """Result of parsing one response. ``level`` is ``None`` exactly when ``error`` is set."""

    level: int | None
    label: str | None
    reasoning: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def _bad(reason: str) -> ParsedResponse:
    return ParsedResponse(None, None, None, reason)


# Shared instances: the malformed results carry no per-call data.
_NOT_STR = _bad("not_a_string")
_EMPTY = _bad("empty")
_NO_THINK = _bad("missing_think_block")
_MULTI_THINK = _bad("multiple_think_blocks")
_UNCLOSED = _bad("unclosed_think")
_EMPTY_REASONING = _bad("empty_reasoning")
_TRAILING = _bad("text_after_think")
_NO_LABEL = _bad("no_label")
_BAD_LABEL = _bad("label_not_in_schema")
_TEXT_BEFORE_THINK = _bad("text_before_think")
_LABEL_NOT_ALONE = _bad("label_not_on_own_line")


def _parse_post_cot(text: str, table: dict[str, int]) -> ParsedResponse:
    s = text.strip()
    if not s:
        return _EMPTY
    nl = s.find("\n")
    if nl < 0:
        # One line only: a bare label (no reasoning) or garbage.
        return _NO_THINK if s in table else _NO_LABEL
    first = s[:nl].rstrip()
    level = table.get(first)
    if level is None:
        if not first or first.startswith(THINK_OPEN):
            return _NO_LABEL
        return _BAD_LABEL if len(first) <= 16 and THINK_OPEN not in first else _NO_LABEL
    n_open = s.count(THINK_OPEN)
    n_close = s.count(THINK_CLOSE)
    if n_open == 0:
        return _NO_THINK
    if n_open > 1 or n_close > 1:
        return _MULTI_THINK
    if n_close == 0:
        return _UNCLOSED
    start = s.find(THINK_OPEN, nl + 1)
    # Between the label line and <think> only whitespace is allowed (a second label is malformed).
    if s[nl + 1 : start].strip():
        return _TEXT_BEFORE_THINK
    end = s.find(THINK_CLOSE)
    if end < start:
        return _UNCLOSED
    if end + len(THINK_CLOSE) != len(s):
        return _TRAILING
    reasoning = s[start + len(THINK_OPEN) : end].strip()
    if not reasoning:
        return _EMPTY_REASONING
    return ParsedResponse(level, first, reasoning, None)


def _parse_pre_cot(text: str, table: dict[str, int]) -> ParsedResponse:
    s = text.strip()
    if not s:
        return _EMPTY
    if not s.startswith(THINK_OPEN):
        return _NO_THINK if THINK_OPEN not in s else _TEXT_BEFORE_THINK
    n_open = s.count(THINK_OPEN)
    n_close = s.count(THINK_CLOSE)
    if n_open > 1 or n_close > 1:
        return _MULTI_THINK
    if n_close == 0:
        return _UNCLOSED
    end = s.find(THINK_CLOSE)
    reasoning = s[len(THINK_OPEN) : end].strip()
    if not reasoning:
        return _EMPTY_REASONING
    tail = s[end + len(THINK_CLOSE) :]
    nl = tail.rfind("\n")
    if nl < 0:
        return _LABEL_NOT_ALONE if tail.strip() else _NO_LABEL
    if tail[:nl].strip():
        return _TRAILING  # text between </think> and the label line
    label = tail[nl + 1 :].strip()
    if not label:
        return _NO_LABEL
    level = table.get(label)
    if level is None:
        return _BAD_LABEL
    return ParsedResponse(level, label, reasoning, None)


_PARSERS = {"post_cot": _parse_post_cot, "pre_cot": _parse_pre_cot}


def parse_response(
    text: object, schema: LabelSchema | str | None = None, fmt: ResponseFormat = "post_cot"
) -> ParsedResponse:
    """Parse one model response; never raises on any ``text``.

    Args:
        text: the decoded response (anything: non-strings are malformed, not errors).
        schema: a :class:`~taosr1_verl.schema.LabelSchema` or preset name (default ``taosr1``).
        fmt: ``"post_cot"`` (label first) or ``"pre_cot"`` (reasoning first).

    Returns:
        A :class:`ParsedResponse`; ``ok`` is true when the text follows the contract.

    Example:
        >>> parse_response("3\\n<think>same category, colour unknown</think>").level
        3
        >>> parse_response("<think>x</think>\\n3").error
        'no_label'
        >>> parse_response("\\uff14\\n<think>full-width digit</think>").error  # look-alikes are not labels
        'label_not_in_schema'
    """
    return make_parser(schema, fmt)(text)


def make_parser(schema: LabelSchema | str | None = None, fmt: ResponseFormat = "post_cot"):
    """A one-argument parser bound to a schema and format (the fast path for scoring many texts)."""
    if fmt not in _PARSERS:
        raise ValueError(f"unknown response format {fmt!r}; expected one of {FORMATS}")
    table = get_schema(schema).label_to_level
    impl = _PARSERS[fmt]

    def parse(text: object) -> ParsedResponse:
        if type(text) is not str:
            if not isinstance(text, str):
                return _NOT_STR
            text = str(text)
        return impl(text, table)

    return parse


def format_response(label: str, reasoning: str, fmt: ResponseFormat = "post_cot") -> str:
    """Render a well-formed response (used by the teacher and the SFT builder).

    Example:
        >>> format_response("4", "matches every attribute")
        '4\\n<think>\\nmatches every attribute\\n</think>'
    """
    reasoning = reasoning.strip()
    if not reasoning:
        raise ValueError("reasoning must be non-empty")
    if THINK_OPEN in reasoning or THINK_CLOSE in reasoning:
        raise ValueError("reasoning must not contain <think> or </think>")
    if fmt == "post_cot":
        return f"{label}\n{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}"
    if fmt == "pre_cot":
        return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n{label}"
    raise ValueError(f"unknown response format {fmt!r}; expected one of {FORMATS}")
