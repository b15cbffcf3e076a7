"""Submit a recipe to a running Ray cluster as a Ray job (``taosr1 recipe run ... --submit ADDRESS``).

The job runs the same argument list as a local run (:func:`~taosr1_verl.integrations.verl.launch.build_command`)
with ``python3`` of the cluster's nodes, so taosr1-verl (and verl) must be installed there, as in a GPU
image built with ``pip install "taosr1-verl[gpu]"``. What the job gets besides:

- ``env_vars`` in its runtime env: ``VERL_USE_EXTERNAL_MODULES`` naming our plugin modules (and, with
  ``--device cpu``, the CPU environment), so every verl process on every node loads them;
- a user's own recipe file is uploaded as the job's ``working_dir`` and found there (``--config-dir=.``);
- on CPU, ``ray_kwargs.ray_init`` loses the overlay's ``num_cpus``/``num_gpus``/``include_dashboard``, which
  describe a cluster verl would start itself and which Ray refuses when the driver joins an existing one.

Ray clusters started with ``ray start`` use token authentication (Ray 2.60); the client sends the token at
hand (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, as Ray's own tools look for it)
unless ``RAY_AUTH_MODE=disabled`` says otherwise.

Example::

    >>> from taosr1_verl.integrations.verl.submit import build_job, ray_job_submit_argv
    >>> job = build_job("grpo", ["trainer.nnodes=2"], device="gpu", submission_id="taosr1-grpo-1")
    >>> job.entrypoint[:3]
    ['python3', '-m', 'verl.trainer.main_ppo']
    >>> ray_job_submit_argv(job, "http://head:8265")[:5]
    ['ray', 'job', 'submit', '--address=http://head:8265', '--submission-id=taosr1-grpo-1']
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taosr1_verl.integrations.verl.environment import CPU_ENV, with_plugin_modules
from taosr1_verl.integrations.verl.launch import build_command
from taosr1_verl.integrations.verl.recipes import Device, get_recipe

logger = logging.getLogger(__name__)

CLUSTER_PYTHON = "python3"
"""The interpreter a job runs on the cluster's nodes (their environment's, as ``ray job submit`` does)."""

JOINING_OVERRIDES: tuple[str, ...] = (
    "++ray_kwargs.ray_init.num_cpus=null",
    "++ray_kwargs.ray_init.num_gpus=null",
    "++ray_kwargs.ray_init.include_dashboard=null",
)
"""Drop the CPU overlay's local-cluster ``ray.init`` settings for a job that joins a running cluster."""

WORKING_DIR_EXCLUDES: tuple[str, ...] = (".git", ".venv", "**/__pycache__", "*.parquet", "*.safetensors", "*.bin",
                                         "*.pt", "checkpoints", "outputs", "runs")
"""Kept out of an uploaded recipe directory (Ray caps a working_dir at 500 MiB; data must be on shared storage)."""


@dataclass(frozen=True)
class Job:
    """What is handed to Ray's job API."""

    entrypoint: list[str]
    """The argument list the job runs (Ray runs it through a shell, each argument quoted)."""
    runtime_env: dict[str, Any]
    """``env_vars`` (and ``working_dir`` for a user's recipe file, ``pip`` when asked)."""
    submission_id: str
    """The job's id (``ray job logs ID``, ``ray job stop ID``)."""
    metadata: dict[str, str] = field(default_factory=dict)


def build_job(
    recipe: str,
    overrides: Sequence[str] = (),
    device: Device = "gpu",
    nproc_per_node: int = 8,
    pip: Sequence[str] = (),
    submission_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Job:
    """The Ray job that runs ``recipe`` with ``overrides`` on a cluster's ``device``s.

    ``environ`` (default ``os.environ``) supplies modules already listed in ``VERL_USE_EXTERNAL_MODULES``.
    """
    spec = get_recipe(recipe)
    extra = list(JOINING_OVERRIDES) if device == "cpu" and spec.kind == "ppo" else []
    entrypoint = build_command(recipe, [*overrides, *extra], device, nproc_per_node, python=CLUSTER_PYTHON)
    base = {k: v for k, v in (os.environ if environ is None else environ).items() if k == "VERL_USE_EXTERNAL_MODULES"}
    env_vars = with_plugin_modules(base)
    if device == "cpu":
        env_vars = CPU_ENV | env_vars
    runtime_env: dict[str, Any] = {"env_vars": env_vars}
    if spec.config_dir is not None:
        runtime_env["working_dir"] = spec.config_dir
        runtime_env["excludes"] = list(WORKING_DIR_EXCLUDES)
        entrypoint = [a.replace(f"--config-dir={spec.config_dir}", "--config-dir=.") for a in entrypoint]
    if pip:
        runtime_env["pip"] = list(pip)
    job_id = submission_id or f"taosr1-{spec.name}-{uuid.uuid4().hex[:8]}"
    return Job(entrypoint, runtime_env, job_id, {"taosr1_recipe": spec.where, "device": device})


def ray_job_submit_argv(job: Job, address: str) -> list[str]:
    """The same job as a ``ray job submit`` command line (what ``--dry-run`` prints)."""
    return ["ray", "job", "submit", f"--address={address}", f"--submission-id={job.submission_id}",
            f"--runtime-env-json={json.dumps(job.runtime_env)}", "--", *job.entrypoint]


def ray_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The Ray cluster token at hand, where Ray's own tools look for it: ``RAY_AUTH_TOKEN``, the file
    ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token`` (what ``ray start --head`` writes); None if none."""
    env = os.environ if environ is None else environ
    if env.get("RAY_AUTH_TOKEN"):
        return env["RAY_AUTH_TOKEN"].strip()
    home = Path(env.get("HOME") or Path.home())
    path = Path(env.get("RAY_AUTH_TOKEN_PATH") or home / ".ray" / "auth_token")
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def ray_auth_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default ``os.environ``) with ``RAY_AUTH_MODE=token`` when it is unset and a token exists:
    the environment in which Ray's own CLI (``ray job logs``, ``ray job stop``) reaches a ``ray start`` cluster.

    Ray 2.60's ``ray start`` enables token authentication and writes the token; clients in another process
    stay in ``disabled`` mode unless told, and are then refused ("Authentication token is missing").
    """
    env = dict(os.environ if environ is None else environ)
    if "RAY_AUTH_MODE" not in env and ray_token(env):
        env["RAY_AUTH_MODE"] = "token"
    return env


class SubmitError(RuntimeError):
    """The cluster could not be reached or refused the job."""


def submit(job: Job, address: str, wait: bool = True, echo: Callable[[str], None] | None = None) -> str:
    """Submit ``job`` to the Ray cluster at ``address`` (``http://HEAD:8265``); returns the final status
    (``SUCCEEDED``, ``FAILED``, ``STOPPED``), or ``PENDING``/``RUNNING`` when ``wait`` is false.

    While waiting, the job's log is streamed to ``echo`` (default: stdout). Ctrl-C stops following the log
    and leaves the job running, as ``ray job submit`` does (``ray job stop <id>`` stops it).
    """
    from ray.exceptions import RayError
    from ray.job_submission import JobStatus, JobSubmissionClient

    emit = echo or (lambda text: print(text, end="", flush=True))
    token = ray_token() if os.environ.get("RAY_AUTH_MODE", "token") == "token" else None
    # The header, not RAY_AUTH_MODE: Ray caches its auth mode when first imported (verl imports it to validate).
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        client = JobSubmissionClient(address, headers=headers)
        job_id = client.submit_job(entrypoint=_shell_join(job.entrypoint), runtime_env=job.runtime_env,
                                   submission_id=job.submission_id, metadata=job.metadata)
    except (ConnectionError, RuntimeError, ValueError, OSError, RayError) as e:
        raise SubmitError(f"Ray cluster at {address}: {type(e).__name__}: {e}") from e
    logger.info("submitted %s to %s (ray job logs %s / ray job stop %s)", job_id, address, job_id, job_id)
    if not wait:
        return str(client.get_job_status(job_id))

    async def follow() -> None:
        async for lines in client.tail_job_logs(job_id):
            emit(lines)

    asyncio.run(follow())
    status = client.get_job_status(job_id)
    # The log stream can end a moment before the status is final.
    while not JobStatus(status).is_terminal():
        import time

        time.sleep(1.0)
        status = client.get_job_status(job_id)
    return str(JobStatus(status).value)


def _shell_join(argv: Sequence[str]) -> str:
    """Ray runs a job's entrypoint with a shell: quote every argument (as ``ray job submit`` does)."""
    import shlex

    return shlex.join(argv)
