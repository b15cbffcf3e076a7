"""Reading what verl prints: the per-step metric lines of its console log.

verl prints each training step's metrics as ``key:value`` pairs on one line containing ``step:N``
(``sft_trainer`` inside its tqdm line, ``main_ppo`` on its own line). :class:`StepProgress` turns those
lines into a progress bar while a run streams; :func:`read_metric_series` reads them back from the log
:func:`taosr1_verl.integrations.verl.supervise.run_recipe` wrote.
"""

from __future__ import annotations

import collections
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

_STEP_LINE = re.compile(r"(?:^|[^\w/])step:(\d+) - ")


class StepProgress:
    """An ``echo`` for :func:`run_recipe`: a progress bar fed by verl's ``step:N - ...`` metric lines, every
    line kept at DEBUG only (the log file has them all). With DEBUG logging on, the lines are shown instead
    of the bar.

    Example:
        >>> with StepProgress(total=3, desc="sft", disable=True) as echo:
        ...     echo("Epoch 1/9:  10%|#| step:2 - train/loss:1.5")
        ...     echo.step
        2
    """

    def __init__(self, total: int, desc: str, disable: bool | None = None) -> None:
        from tqdm.auto import tqdm

        self.verbose = logger.isEnabledFor(logging.DEBUG)
        self.step = 0
        self.bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True,
                        disable=self.verbose if disable is None else disable)
        self.bar.set_postfix_str("starting")

    def __call__(self, line: str) -> None:
        match = _STEP_LINE.search(line)
        if match and int(match.group(1)) > self.step:
            if self.step == 0:
                self.bar.set_postfix_str("", refresh=False)
            self.bar.update(int(match.group(1)) - self.step)
            self.step = int(match.group(1))
        if self.verbose:
            logger.debug("%s", line)

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def log_tail(path: str | os.PathLike[str], lines: int = 30) -> str:
    """The last ``lines`` lines of a run's log (for error messages); empty when there is no log."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(collections.deque(f, maxlen=lines))
    except OSError:
        return ""


def read_metric_series(log: str | os.PathLike[str], keys: Sequence[str]) -> dict[str, list[float]]:
    """Per-step values of verl metrics read from a log that :func:`run_recipe` wrote.

    verl prints each training step's metrics as ``key:value`` pairs on one console line containing
    ``step:``; a key missing from a step is skipped, a missing log gives ``{}``.

    Example: ``read_metric_series("runs/grpo/grpo.log", ["critic/score/mean"])`` ->
    ``{"critic/score/mean": [0.31, 0.35, ...]}``.
    """
    path = Path(log)
    series: dict[str, list[float]] = {}
    if not path.exists():
        return series
    patterns = {key: re.compile(re.escape(key) + r":(-?[0-9.eE+-]+)") for key in keys}
    for line in path.read_text(errors="replace").splitlines():
        if "step:" not in line:
            continue
        for key, pattern in patterns.items():
            m = pattern.search(line)
            if m:
                series.setdefault(key, []).append(float(m.group(1)))
    return series


