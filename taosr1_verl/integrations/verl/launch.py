"""Run a verl recipe (``sft`` under torchrun, ``grpo`` with ``main_ppo``) as a subprocess, on CPU or GPU.

The runner builds an argument list (never a shell string), adds the CPU environment and overlay when
``device="cpu"``, streams the trainer's log to a file and to the logger, and shuts down cleanly:

- the trainer runs in its own process group; Ctrl-C (or a timeout) sends it SIGINT, then SIGTERM, then
  SIGKILL to the whole group after a grace period each;
- a GRPO run gets a private Ray temp dir, so afterwards every process of *that* Ray cluster (raylet, GCS,
  workers, vLLM engine cores) can be found and stopped, without ``ray stop`` (which would stop every
  Ray cluster on the machine, other users' included);
- descendants seen during the run are stopped too, so nothing is left orphaned after success, failure
  or interruption.

Command line::

    python -m taosr1_verl.integrations.verl.launch grpo --device cpu -- \\
        actor_rollout_ref.model.path=/ckpt data.train_files=train.parquet data.val_files=val.parquet

Example::

    >>> from taosr1_verl.integrations.verl.launch import build_command
    >>> cmd = build_command("grpo", ["trainer.total_training_steps=2"], device="cpu")
    >>> cmd[1:3], cmd[-2:]
    (['-m', 'verl.trainer.main_ppo'], ['overlays/ppo=cpu', 'trainer.total_training_steps=2'])
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from taosr1_verl.integrations.verl.cpu_runtime import (
    CPU_ENV,
    PLUGIN_MODULES,
    cpu_env,
    recipes_dir,
    with_runtime_module,
)
from taosr1_verl.integrations.verl.recipes import Device, get_recipe, overlay_override

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


def build_command(
    recipe: str,
    overrides: Sequence[str] = (),
    device: Device = "cpu",
    nproc_per_node: int = 1,
    python: str | None = None,
) -> list[str]:
    """The argument list that runs ``recipe`` (no environment; see :func:`run_recipe`)."""
    spec = get_recipe(recipe)
    python = python or sys.executable
    config = [f"--config-path={recipes_dir()}", f"--config-name={spec.name}", overlay_override(spec, device)]
    if spec.kind == "sft":
        launcher = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}"]
        return [*launcher, "-m", spec.entry, *config, *overrides]
    return [python, "-m", spec.entry, *config, *overrides]


SUBMIT_EXCLUDES: tuple[str, ...] = (".git", ".venv", "**/__pycache__", "checkpoints", "outputs", "runs", "*.parquet",
                                     "*.safetensors")
"""Kept out of the job package ``ray job submit`` uploads (Ray caps a working_dir at 500 MiB)."""


def build_submit_command(
    recipe: str,
    overrides: Sequence[str] = (),
    address: str = "http://127.0.0.1:8265",
    device: Device = "gpu",
    working_dir: str | os.PathLike[str] | None = None,
    nproc_per_node: int = 8,
    pip: Sequence[str] = (),
) -> list[str]:
    """``ray job submit`` for ``recipe`` on a Ray cluster, shipping the plugin in the runtime env.

    The working dir (default: the repository holding this package) is uploaded and put on ``sys.path``
    of the job driver and of every Ray worker, so ``taosr1_verl``, ``rewards/`` and ``recipes/`` need no
    install on the nodes; ``pip`` adds packages to the job's environment. Paths in ``overrides`` (model,
    data) must be visible from every node (shared storage or an object store URL).
    """
    import json

    get_recipe(recipe)  # fail early on an unknown recipe
    wd = Path(working_dir) if working_dir else recipes_dir().parent
    env = {"VERL_USE_EXTERNAL_MODULES": ",".join(PLUGIN_MODULES)}
    if device == "cpu":
        env = CPU_ENV | env
    runtime_env: dict[str, object] = {"working_dir": str(wd), "excludes": list(SUBMIT_EXCLUDES), "env_vars": env}
    if pip:
        runtime_env["pip"] = list(pip)
    # Ray runs the entrypoint through a shell in the uploaded working dir: quote every argument, and let
    # that shell expand $PWD (Hydra wants an absolute --config-path).
    import shlex

    job = [shlex.quote(a) for a in build_command(recipe, overrides, device, nproc_per_node, python="python3")]
    job = ["--config-path=$PWD/recipes" if a.startswith(shlex.quote(f"--config-path={recipes_dir()}")) else a
           for a in job]
    return ["ray", "job", "submit", f"--address={address}", f"--runtime-env-json={json.dumps(runtime_env)}",
            "--", *job]


def build_env(device: Device, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of the trainer: ``base`` (default ``os.environ``) with our verl runtime module, plus the
    CPU environment on CPU."""
    env = cpu_env(base) if device == "cpu" else with_runtime_module(base)
    # Line-buffered child output, so the streamed log keeps up with the run.
    env["PYTHONUNBUFFERED"] = "1"
    return env


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
    return _processes_using(ray_dir) if ray_dir else set()


def _processes_using(marker: str) -> set[int]:
    """PIDs whose command line mentions ``marker`` (our private Ray temp dir)."""
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


def _stop(pids: set[int], grace: float) -> list[int]:
    """SIGTERM, wait, SIGKILL; returns the PIDs that were still alive."""
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
            leftover_pids |= _processes_using(ray_dir)
        leftovers = _stop(leftover_pids, grace=5.0) if leftover_pids else []
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
    import re

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


def _alive(pid: int, create_time: float) -> bool:
    """``pid`` still runs and is the same process we saw (not a reused PID)."""
    import psutil

    try:
        p = psutil.Process(pid)
        return p.create_time() == create_time and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--log", help="append the trainer's log to this file")
    parser.add_argument("--timeout", type=float, help="stop the run after this many seconds")
    parser.add_argument("--nproc-per-node", type=int, default=None,
                        help="SFT: processes (devices) per node (default 1 on cpu, 8 on gpu)")
    parser.add_argument("--submit", metavar="ADDRESS",
                        help="submit to the Ray cluster at ADDRESS (e.g. http://head:8265) with `ray job submit`")
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The runner's command-line arguments (shared by ``python -m ...launch`` and ``taosr1 recipe run``).

    Options may come before or after the Hydra overrides (see :func:`normalize_args`).
    """
    parser.add_argument("recipe", choices=sorted(["sft", "grpo"]))
    _add_options(parser)
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides, key=value")


def normalize_args(args: argparse.Namespace) -> argparse.Namespace:
    """Pick options out of ``args.overrides`` (argparse leaves them there when they follow the recipe)."""
    options = argparse.ArgumentParser(add_help=False)
    _add_options(options)
    options.add_argument("overrides", nargs="*")
    ns = options.parse_intermixed_args(list(args.overrides))
    defaults = vars(options.parse_args([]))
    for key, value in vars(ns).items():
        if key == "overrides" or value != defaults[key]:
            setattr(args, key, value)
    return args


def run_from_args(args: argparse.Namespace) -> int:
    """Run, submit or print what ``args`` (see :func:`add_arguments`) ask for; returns an exit status."""
    import shlex

    args = normalize_args(args)
    nproc = args.nproc_per_node or (1 if args.device == "cpu" else 8)
    if args.submit:
        cmd = build_submit_command(args.recipe, args.overrides, args.submit, args.device, nproc_per_node=nproc)
        if args.dry_run:
            print(shlex.join(cmd))
            return 0
        return subprocess.call(cmd)
    if args.dry_run:
        print(shlex.join(build_command(args.recipe, args.overrides, args.device, nproc)))
        return 0
    result = run_recipe(
        args.recipe, args.overrides, args.device, args.log, args.timeout, nproc,
        echo=lambda line: print(line, flush=True),
    )
    return result.returncode if not result.interrupted else 130


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m taosr1_verl.integrations.verl.launch RECIPE [--device cpu|gpu] [overrides...]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_from_args(args)


if __name__ == "__main__":
    sys.exit(main())
