"""Run a verl recipe as a subprocess on this machine and leave nothing of it behind.

- the trainer runs in its own process group; Ctrl-C (or a timeout) sends it SIGINT, then SIGTERM, then
  SIGKILL to the whole group after a grace period each;
- a GRPO run gets a private Ray temp dir, so afterwards every process of *that* Ray cluster (raylet, GCS,
  workers, vLLM engine cores) can be found and stopped, without ``ray stop`` (which would stop every
  Ray cluster on the machine, other users' included);
- descendants seen during the run are stopped too, so nothing is left orphaned after success, failure
  or interruption.

The command itself comes from :mod:`taosr1_verl.integrations.verl.launch`; a cluster run goes through
:mod:`taosr1_verl.integrations.verl.submit` instead.

Example (starts a trainer)::

    >>> from taosr1_verl.integrations.verl.supervise import run_recipe
    >>> result = run_recipe("sft", ["model.path=/ckpt", "data.train_files=sft.parquet"],
    ...                     device="cpu", log_path="runs/sft.log")                       # doctest: +SKIP
    >>> result.ok                                                                       # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from taosr1_verl.integrations.verl.launch import build_command, build_env
from taosr1_verl.integrations.verl.recipes import Device, get_recipe

logger = logging.getLogger(__name__)

GRACE_S = 20.0
"""Seconds a trainer gets after SIGINT (verl closes TransferQueue and Ray) before SIGTERM, and again before SIGKILL."""


@dataclass
class RunResult:
    """Outcome of :func:`run_recipe`."""

    returncode: int
    """The trainer's exit status (negative: killed by that signal)."""
    command: list[str]
    """The argument list that was run."""
    log_path: Path | None
    """Where the full log is."""
    seconds: float
    """Wall time."""
    interrupted: bool = False
    """True if the run was stopped by Ctrl-C or the timeout."""
    leftovers: list[int] = field(default_factory=list)
    """PIDs that had to be killed after the trainer exited (its Ray cluster, vLLM engines)."""
    pid: int = 0
    """The trainer's PID (also its process group)."""
    seen: list[int] = field(default_factory=list)
    """Every descendant PID observed during the run."""
    ray_dir: str | None = None
    """The run's private Ray temp dir (GRPO); :func:`ray_processes` finds anything still using it."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.interrupted


def _descendants(pid: int) -> dict[int, float]:
    """Live descendants of ``pid`` as {pid: create_time} (the time guards against PID reuse)."""
    import psutil

    out = {}
    try:
        for p in psutil.Process(pid).children(recursive=True):
            try:
                out[p.pid] = p.create_time()
            except psutil.Error:
                continue
    except psutil.Error:
        pass
    return out


def ray_processes(ray_dir: str | None) -> set[int]:
    """PIDs of the Ray cluster that used ``ray_dir`` as its temp dir (empty when it is gone)."""
    return processes_using(ray_dir) if ray_dir else set()


def processes_using(marker: str) -> set[int]:
    """PIDs whose command line mentions ``marker`` (a private Ray temp dir), this process excepted."""
    import psutil

    found = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(marker in part for part in (p.info["cmdline"] or ())):
                found.add(p.info["pid"])
        except psutil.Error:
            continue
    found.discard(os.getpid())
    return found


def stop_processes(pids: Iterable[int], grace: float) -> list[int]:
    """SIGTERM, wait ``grace`` seconds, SIGKILL; returns the PIDs that were alive at the start."""
    import psutil

    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            continue
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace)
    return [p.pid for p in procs]


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def run_recipe(
    recipe: str,
    overrides: Sequence[str] = (),
    device: Device = "cpu",
    log_path: str | os.PathLike[str] | None = None,
    timeout_s: float | None = None,
    nproc_per_node: int = 1,
    env: Mapping[str, str] | None = None,
    echo: Callable[[str], None] | None = None,
    grace_s: float = GRACE_S,
) -> RunResult:
    """Run ``recipe`` to completion, streaming its log; always leaves no process of the run behind.

    ``echo`` receives each log line (default: the module logger at INFO). On Ctrl-C the trainer is
    stopped and ``KeyboardInterrupt`` is re-raised after the cleanup.
    """
    spec = get_recipe(recipe)
    overrides = list(overrides)
    ray_dir: str | None = None
    if spec.kind == "ppo":
        # Short: Ray puts Unix sockets under it (107-byte path limit).
        ray_dir = tempfile.mkdtemp(prefix=f"rt{uuid.uuid4().hex[:6]}-", dir="/tmp")
        overrides.append(f"++ray_kwargs.ray_init._temp_dir={ray_dir}")
    cmd = build_command(recipe, overrides, device, nproc_per_node)
    full_env = build_env(device, env)
    log_file = None
    if log_path is not None:
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 (closed in finally)
    emit = echo or (lambda line: logger.info("%s", line))
    logger.info("running %s (%s): %s", recipe, device, " ".join(cmd))
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # own process group: signals reach torchrun/Ray children, not us
        text=True,
        errors="replace",
        bufsize=1,
    )
    seen: dict[int, float] = {}
    stop_tracking = threading.Event()

    def track() -> None:
        # vLLM engine cores and Ray workers may start their own sessions; remember them while they live.
        while not stop_tracking.wait(1.0):
            seen.update(_descendants(proc.pid))

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if log_file is not None:
                log_file.write(line + "\n")
                log_file.flush()
            emit(line)

    tracker = threading.Thread(target=track, daemon=True)
    reader = threading.Thread(target=pump, daemon=True)
    tracker.start()
    reader.start()
    interrupted = False
    keyboard = False
    try:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("%s: timeout after %.0f s, stopping", recipe, timeout_s)
            interrupted = True
        except KeyboardInterrupt:
            logger.warning("%s: interrupted, stopping", recipe)
            interrupted = keyboard = True
        if interrupted:
            seen.update(_descendants(proc.pid))
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                _signal_group(proc.pid, sig)
                try:
                    proc.wait(timeout=grace_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
    finally:
        stop_tracking.set()
        tracker.join(timeout=5)
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=10)
        _signal_group(proc.pid, signal.SIGKILL)  # any straggler still in the trainer's group
        leftover_pids = {pid for pid, t in seen.items() if _alive(pid, t)}
        if ray_dir is not None:
            leftover_pids |= processes_using(ray_dir)
        leftovers = stop_processes(leftover_pids, grace=5.0) if leftover_pids else []
        if leftovers:
            logger.info("%s: stopped %d leftover process(es) of the run", recipe, len(leftovers))
        if ray_dir is not None:
            import shutil

            shutil.rmtree(ray_dir, ignore_errors=True)
        if log_file is not None:
            log_file.close()
    result = RunResult(
        returncode=proc.returncode,
        command=cmd,
        log_path=Path(log_path) if log_path is not None else None,
        seconds=time.monotonic() - start,
        interrupted=interrupted,
        leftovers=leftovers,
        pid=proc.pid,
        seen=sorted(seen),
        ray_dir=ray_dir,
    )
    if keyboard:
        raise KeyboardInterrupt
    return result


def _alive(pid: int, create_time: float) -> bool:
    """``pid`` still runs and is the same process we saw (not a reused PID)."""
    import psutil

    try:
        p = psutil.Process(pid)
        return p.create_time() == create_time and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


