"""Row-accounted input errors: every input row is kept or dropped with a reason, never lost.

``on_error="raise"`` (default) stops at the first bad row with a :class:`DataError` naming file, row and
field. ``on_error="skip"`` records the row in a :class:`DropReport` and goes on; the report is written as
JSONL (one line per dropped row) and always satisfies ``kept + dropped == input``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from taosr1_verl.errors import UserError
from taosr1_verl.files import atomic_path

OnError = Literal["raise", "skip"]
ON_ERROR: tuple[str, ...] = ("raise", "skip")

# Reasons a row can be dropped for (stable strings: reports and tests use them).
REASONS: tuple[str, ...] = (
    "empty_query", "empty_title", "missing_label", "unknown_label", "bad_encoding", "bad_type", "bad_row",
    "unclosed_quote", "conflicting_duplicate", "duplicate", "unknown_product", "unknown_query", "bad_json",
)


class DataError(UserError):
    """A bad input row: ``str(e)`` reads ``<file>: row <n>, field '<field>': <detail>``.

    ``row`` is the 1-based data row (header excluded; for JSONL the line number).
    """

    def __init__(self, file: str, row: int | None, field: str | None, reason: str, detail: str) -> None:
        self.file, self.row, self.field, self.reason, self.detail = str(file), row, field, reason, detail
        where = [self.file]
        loc = []
        if row is not None:
            loc.append(f"row {row}")
        if field is not None:
            loc.append(f"field {field!r}")
        msg = f"{where[0]}: {', '.join(loc)}: {detail}" if loc else f"{where[0]}: {detail}"
        super().__init__(msg + f" [{reason}]")


@dataclass
class DropReport:
    """Every dropped row with its reason, plus the counts that prove nothing was lost."""

    n_input: int = 0
    n_kept: int = 0
    drops: list[dict] = field(default_factory=list)
    by_reason: Counter = field(default_factory=Counter)

    @property
    def n_dropped(self) -> int:
        return sum(self.by_reason.values())

    def drop(self, err: DataError) -> None:
        self.by_reason[err.reason] += 1
        self.drops.append({"file": err.file, "row": err.row, "field": err.field, "reason": err.reason,
                           "detail": err.detail})

    def check(self) -> None:
        """Raise if rows went missing (a bug, never a data problem)."""
        if self.n_kept + self.n_dropped != self.n_input:
            raise AssertionError(f"row accounting broken: kept {self.n_kept} + dropped {self.n_dropped} "
                                 f"!= input {self.n_input}")

    def summary(self) -> dict:
        return {"input": self.n_input, "kept": self.n_kept, "dropped": self.n_dropped,
                "by_reason": dict(self.by_reason.most_common())}

    def write(self, path: str | os.PathLike[str]) -> None:
        """JSONL: a summary line (``{"summary": ...}``), then one line per dropped row; atomic."""
        self.check()
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"summary": self.summary()}) + "\n")
            for d in self.drops:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")


class RowGate:
    """Applies the error policy: ``gate.fail(err)`` raises (``raise``) or records the drop (``skip``)."""

    def __init__(self, on_error: OnError = "raise", report: DropReport | None = None) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error = on_error
        self.report = report if report is not None else DropReport()

    def fail(self, err: DataError) -> None:
        if self.on_error == "raise":
            raise err
        self.report.drop(err)
