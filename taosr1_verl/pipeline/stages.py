"""Resumable stages: each stage writes into its own directory, atomically, and leaves a completion record.

A stage runs in ``<run_dir>/.<name>.partial`` and the directory is renamed to ``<run_dir>/<name>`` only
after the stage function returned; ``<name>/stage.json`` records when and with which settings it
finished. A rerun skips every stage whose directory holds that record (a Ctrl-C mid-stage loses only the
stage in flight); ``rerun_from`` deletes the records from a stage on, so it and the stages after it run
again. Settings that change a stage's output are part of the record: a changed setting invalidates the
stage instead of silently reusing stale output. A stage names the settings it reads (``Stage.settings``;
default all of them), and its fingerprint includes the previous stage's, so changing a late-stage
setting (say the GRPO sampler) reruns only that stage and the ones after it. Each record also holds the
stage's wall time and the peak memory of the whole process tree it ran (trainers, Ray, vLLM workers).

The record is the stage's manifest (``taosr1_verl.run_manifest``): it also lists every file of the stage
directory (size + SHA-256) and a digest of each earlier stage's files, and a stage counts as complete only
while all of them still match. A deleted or edited output, or an earlier stage rerun on its own (``--until``)
with other results, makes the stage run again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taosr1_verl.files import atomic_write_json, publish_dir
from taosr1_verl.run_manifest import fingerprint_output, output_change

logger = logging.getLogger(__name__)

RECORD = "stage.json"


@dataclass
class Stage:
    """One step of a pipeline: ``run(ctx, out_dir) -> summary dict`` (written to the record)."""

    name: str
    run: Callable[[StageContext, Path], dict[str, Any]]
    description: str = ""
    settings: tuple[str, ...] | None = None
    """The settings keys this stage reads (None: all). Missing keys count as absent, not as an error."""


@dataclass
class StageContext:
    """What stages share: the run directory, the settings, and the finished stages' summaries."""

    run_dir: Path
    settings: dict[str, Any]
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def stage_dir(self, name: str) -> Path:
        """The finished output directory of an earlier stage."""
        d = self.run_dir / name
        if not (d / RECORD).exists():
            raise RuntimeError(f"stage {name!r} has not completed in {self.run_dir}")
        return d


def read_record(stage_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((stage_dir / RECORD).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def stage_outputs(stage_dir: Path) -> dict[str, Any]:
    """Size and SHA-256 of every file under a stage directory (the record itself excluded)."""
    out = {}
    for root, _, names in os.walk(stage_dir):
        for name in names:
            p = Path(root) / name
            rel = p.relative_to(stage_dir).as_posix()
            if rel != RECORD and p.is_file():
                out[rel] = fingerprint_output(p)
    return dict(sorted(out.items()))


def _digest(record: dict[str, Any] | None) -> str | None:
    if record is None:
        return None
    return hashlib.sha256(json.dumps(record.get("outputs"), sort_keys=True).encode()).hexdigest()[:16]


def read_settings(stage_dir: Path) -> dict[str, Any]:
    """The settings a completed stage ran with (those it reads, see :class:`Stage`)."""
    record = read_record(stage_dir)
    if record is None:
        raise RuntimeError(f"no completed stage in {stage_dir} (missing or unreadable {RECORD})")
    return json.loads(record["settings"])["settings"]


class PeakMemory:
    """Peak memory of this process and all its descendants (torchrun, Ray, vLLM workers), in bytes.

    A thread sums each process's PSS (shared pages split among their users, so a model mapped by three
    workers counts once; RSS where PSS is unreadable) every ``interval_s`` while the block runs. A sampled
    peak: a spike shorter than the interval can be missed.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def current_bytes() -> int:
        import psutil

        me = psutil.Process()
        total = 0
        for proc in (me, *me.children(recursive=True)):
            try:
                try:
                    total += proc.memory_full_info().pss
                except (psutil.AccessDenied, AttributeError):
                    total += proc.memory_info().rss
            except psutil.Error:
                continue  # exited between listing and reading
        return total

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, self.current_bytes())
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PeakMemory:
        self.peak_bytes = self.current_bytes()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class Pipeline:
    """Runs stages in order, skipping completed ones, with one line of progress per stage."""

    def __init__(self, stages: Sequence[Stage], run_dir: Path, settings: dict[str, Any]) -> None:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stage names: {names}")
        self.stages = list(stages)
        self.ctx = StageContext(run_dir=Path(run_dir), settings=dict(settings))

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def _fingerprint(self, stage: Stage) -> str:
        """The stage's settings, chained with every earlier stage's (an upstream change reaches it)."""
        fp = ""
        for st in self.stages:
            keys = sorted(self.ctx.settings) if st.settings is None else sorted(st.settings)
            used = {k: self.ctx.settings[k] for k in keys if k in self.ctx.settings}
            # the earlier chain by its hash: nesting it as JSON would double its escapes at every stage
            after = hashlib.sha256(fp.encode()).hexdigest()[:16] if fp else ""
            fp = json.dumps({"settings": used, "after": after}, sort_keys=True, default=str)
            if st is stage:
                return fp
        raise ValueError(f"stage {stage.name!r} is not part of this pipeline")

    def invalidate_from(self, name: str) -> None:
        """Make ``name`` and every later stage run again."""
        if name not in self.names:
            raise ValueError(f"unknown stage {name!r}; stages are {self.names}")
        for stage in self.stages[self.names.index(name):]:
            record = self.ctx.run_dir / stage.name / RECORD
            if record.exists():
                record.unlink()

    def _inputs(self, stage: Stage) -> dict[str, str | None]:
        """A digest of every earlier stage's files, as their records list them."""
        before = self.stages[: self.stages.index(stage)]
        return {st.name: _digest(read_record(self.ctx.run_dir / st.name)) for st in before}

    def why_incomplete(self, stage: Stage) -> str | None:
        """Why ``stage`` must run (``None``: its output is complete and current)."""
        d = self.ctx.run_dir / stage.name
        record = read_record(d)
        if record is None:
            return "not run yet"
        if record.get("settings") != self._fingerprint(stage):
            return "other settings"
        if "outputs" not in record or record.get("inputs") != self._inputs(stage):
            return "an earlier stage ran again"
        return output_change(d, record["outputs"])

    def is_complete(self, stage: Stage) -> bool:
        return self.why_incomplete(stage) is None

    def run(self, rerun_from: str | None = None, until: str | None = None) -> dict[str, dict[str, Any]]:
        run_dir = self.ctx.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        if rerun_from:
            self.invalidate_from(rerun_from)
        stale = False
        total = len(self.stages)
        for i, stage in enumerate(self.stages, 1):
            out = run_dir / stage.name
            if stale:  # everything after a rerun stage depends on it
                why = "an earlier stage ran again" if read_record(out) is not None else "not run yet"
            else:
                why = self.why_incomplete(stage)
            if why is None:
                self.ctx.summaries[stage.name] = read_record(out)["summary"]
                logger.info("[%d/%d] %s: done before, skipped", i, total, stage.name)
            else:
                if why != "not run yet":
                    logger.info("[%d/%d] %s: running again (%s)", i, total, stage.name, why)
                stale = True
                partial = run_dir / f".{stage.name}.partial"
                if partial.exists():
                    shutil.rmtree(partial)
                partial.mkdir(parents=True)
                logger.info("[%d/%d] %s: %s", i, total, stage.name, stage.description or "running")
                t0 = time.monotonic()
                with PeakMemory() as memory:
                    summary = stage.run(self.ctx, partial) or {}
                seconds = time.monotonic() - t0
                summary = {**summary, "seconds": round(seconds, 1),
                           "peak_memory_gib": round(memory.peak_bytes / 2**30, 3)}
                record = {"stage": stage.name, "settings": self._fingerprint(stage), "summary": summary,
                          "inputs": self._inputs(stage), "outputs": stage_outputs(partial),
                          "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
                atomic_write_json(partial / RECORD, record)
                publish_dir(partial, out)
                self.ctx.summaries[stage.name] = summary
                logger.info("[%d/%d] %s: finished in %.0f s, peak memory %.1f GiB", i, total, stage.name, seconds,
                            memory.peak_bytes / 2**30)
            if until and stage.name == until:
                break
        return self.ctx.summaries
