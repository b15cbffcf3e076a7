"""The RL row: the one reader of the fields every stage takes from an RL or eval row (verl ``RLHFDataset``
layout, written by :mod:`taosr1_verl.data.builders`, documented in ``docs/data.md``).

=============================  =====================================================================
``prompt``                     chat messages ``[{role, content}, ...]``, non-empty, strings
``reward_model.ground_truth``  the gold label (graded by :mod:`taosr1_verl.rewards`)
``extra_info.index``           the row's key: an int >= 0 (verl copies it into each trajectory's ``index``;
                               the pass@N difficulty file, the tracker and the selection policy use it)
``data_source``                optional text (verl logs validation metrics per data source)
=============================  =====================================================================

One rule for every reader: a field the reader needs that is missing or malformed is a :class:`RowError`
(a ``ValueError``) naming the row and the field; nothing is guessed. verl's ``RLHFDataset`` gives a row
without ``extra_info.index`` the index 0 while a reader falling back to the row's position would key it
elsewhere: such a row is refused, never keyed two ways.

The difficulty sampler also runs other tasks' rows (a math parquet with verl's own filter settings); it balances
batches by :func:`class_level`, the gold level where the ground truth is a label of the schema and
:data:`UNKNOWN_LEVEL` (one class of its own) where it is not. Stages that grade against the label use
:func:`gold_level`, which refuses a ground truth that is not a label.

Example:
    >>> row = {"prompt": [{"role": "user", "content": "q"}], "reward_model": {"ground_truth": "4"},
    ...        "extra_info": {"index": 7}}
    >>> row_index(row, "rl.parquet row 0"), gold_level(row, "taosr1", "rl.parquet row 0"), data_source(row, "")
    (7, 4, '')
    >>> row_index({"extra_info": {}}, "rl.parquet row 3")
    Traceback (most recent call last):
    ...
    taosr1_verl.rl_rows.RowError: rl.parquet row 3: missing field 'extra_info.index' (verl's RLHFDataset would key the row as index 0)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taosr1_verl.sampling.tracker import UNKNOWN_LEVEL
from taosr1_verl.schema import LabelSchema, get_schema

PROMPT = "prompt"
GROUND_TRUTH = "reward_model.ground_truth"
INDEX = "extra_info.index"
DATA_SOURCE = "data_source"


class RowError(ValueError):
    """A missing or malformed field of an RL row; the message names the row and the field."""


def field(row: Mapping[str, Any], dotted: str, where: str) -> Any:
    """The value at ``dotted`` (``reward_model.ground_truth``); missing or null is a :class:`RowError`."""
    cur: Any = row
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur or cur[part] is None:
            hint = " (verl's RLHFDataset would key the row as index 0)" if dotted == INDEX else ""
            raise RowError(f"{where}: missing field {dotted!r}{hint}")
        cur = cur[part]
    return cur


def check_index(value: Any, where: str, name: str = INDEX) -> int:
    """``value`` as a row key: an int >= 0 (numpy ints and digit strings too), else a :class:`RowError`."""
    ok = isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())
    ok = ok or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu")
    if isinstance(value, bool) or not ok or int(value) < 0:
        raise RowError(f"{where}: field {name!r} must be a non-negative int, got {value!r}")
    return int(value)


def row_index(row: Mapping[str, Any], where: str) -> int:
    """``extra_info.index``, required (see the module docstring)."""
    return check_index(field(row, INDEX, where), where)


def prompt_messages(row: Mapping[str, Any], where: str, key: str = PROMPT) -> list[dict[str, str]]:
    """The chat prompt as plain ``{role, content}`` dicts: a non-empty list whose items have string ``role`` and
    ``content``."""
    value = field(row, key, where)
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise RowError(f"{where}: field {key!r} must be a non-empty list of chat messages")
    out = []
    for j, m in enumerate(value):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise RowError(f"{where}: field '{key}[{j}]' must have string 'role' and 'content'")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def ground_truth(row: Mapping[str, Any], where: str) -> Any:
    """``reward_model.ground_truth`` as stored (required; an empty string counts as missing)."""
    value = field(row, GROUND_TRUTH, where)
    if isinstance(value, str) and not value.strip():
        raise RowError(f"{where}: missing field {GROUND_TRUTH!r} (empty)")
    return value


def gold_level(row: Mapping[str, Any], schema: LabelSchema | str | None, where: str) -> int:
    """The gold level: ``reward_model.ground_truth`` normalised with ``schema``; a value that is not one of its
    labels is a :class:`RowError`."""
    value = ground_truth(row, where)
    try:
        return get_schema(schema).normalize(value)
    except ValueError as e:
        raise RowError(f"{where}: field {GROUND_TRUTH!r}: {e}") from None


def class_level(row: Mapping[str, Any], schema: LabelSchema | str | None) -> int:
    """The class the difficulty sampler balances a row in: its gold level, or :data:`UNKNOWN_LEVEL` when the row
    has no ground truth that is a label of ``schema`` (another task's rows form one class)."""
    try:
        return gold_level(row, schema, "")
    except ValueError:
        return UNKNOWN_LEVEL


def data_source(row: Mapping[str, Any], where: str) -> str:
    """``data_source``: optional (``""`` when absent), text when present."""
    value = row.get(DATA_SOURCE)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"{where}: field {DATA_SOURCE!r} must be text, got {value!r}")
    return value
