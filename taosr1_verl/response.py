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

from typing import Literal

from taosr1_verl.schema import LabelSchema, get_schema

ResponseFormat = Literal["post_cot", "pre_cot"]
FORMATS: tuple[str, ...] = ("post_cot", "pre_cot")

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


class ParsedResponse:
    """Result of parsing one response. ``level`` is ``None`` exactly when ``error`` is set.

    ``reasoning`` (the stripped text inside ``<think>``) is sliced out only when read: the reward needs
    the label alone, and copying kilobytes of reasoning per rollout would dominate its cost.
    """

    __slots__ = ("level", "label", "error", "_text", "_a", "_b")

    def __init__(self, level: int | None, label: str | None, error: str | None,
                 text: str | None = None, a: int = 0, b: int = 0) -> None:
        self.level = level
        self.label = label
        self.error = error
        self._text = text
        self._a = a
        self._b = b

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def reasoning(self) -> str | None:
        return None if self._text is None else self._text[self._a : self._b].strip()

    def __repr__(self) -> str:
        return (f"ParsedResponse(level={self.level!r}, label={self.label!r}, "
                f"reasoning={self.reasoning!r}, error={self.error!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParsedResponse):
            return NotImplemented
        return (self.level, self.label, self.reasoning, self.error) == (
            other.level, other.label, other.reasoning, other.error)

    __hash__ = None  # type: ignore[assignment]


def _bad(reason: str) -> ParsedResponse:
    return ParsedResponse(None, None, reason)


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

_OPEN_LEN = len(THINK_OPEN)
_CLOSE_LEN = len(THINK_CLOSE)


def _parse_post_cot(text: str, table: dict[str, int]) -> ParsedResponse:
    # Hot path of every GRPO reward: a handful of C-level scans, no copy of the reasoning.
    nl = text.find("\n")
    if nl < 0:
        s = text.strip()
        if not s:
            return _EMPTY
        return _NO_THINK if s in table else _NO_LABEL
    first = text[:nl].strip()
    if not first:
        # Leading blank lines: rare, so take the copying path.
        text = text.lstrip()
        if not text:
            return _EMPTY
        return _parse_post_cot(text, table)
    level = table.get(first)
    if level is None:
        if first.startswith(THINK_OPEN):
            return _NO_LABEL
        return _BAD_LABEL if len(first) <= 16 and THINK_OPEN not in first else _NO_LABEL
    start = text.find(THINK_OPEN, nl + 1)
    if start < 0:
        return _UNCLOSED if text.find(THINK_CLOSE, nl + 1) >= 0 else _NO_THINK
    end = text.rfind(THINK_CLOSE)
    if end < start:
        return _UNCLOSED
    # Between the label line and <think> only whitespace is allowed (a second label is malformed).
    if start > nl + 1 and text[nl + 1 : start].strip():
        return _TEXT_BEFORE_THINK
    body = start + _OPEN_LEN
    # Another tag inside the block: look closer only when a "<" is there at all.
    if text.find("<", body, end) >= 0 and (
        text.find(THINK_OPEN, body, end) >= 0 or text.find(THINK_CLOSE, body, end) >= 0
    ):
        return _MULTI_THINK
    tail = end + _CLOSE_LEN
    if tail != len(text) and text[tail:].strip():
        return _TRAILING
    i = body
    while i < end and i < body + 8 and text[i].isspace():
        i += 1
    if i == end or (i == body + 8 and not text[i:end].strip()):
        return _EMPTY_REASONING
    return ParsedResponse(level, first, None, text, body, end)


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
    return ParsedResponse(level, label, None, s, len(THINK_OPEN), end)


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
