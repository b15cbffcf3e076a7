"""The command and environment that run a verl recipe: ``sft`` under torchrun, ``grpo`` with ``main_ppo``.

Only argument lists are built here (never a shell string); :mod:`.supervise` runs them on this machine,
:mod:`.submit` hands them to a Ray cluster. The recipes come from the installed package
(``--config-path=pkg://taosr1_verl.recipes``), so nothing reads a source checkout.

Example::

    >>> from taosr1_verl.integrations.verl.launch import build_command
    >>> cmd = build_command("grpo", ["trainer.total_training_steps=2"], device="cpu", python="python3")
    >>> cmd[:3], cmd[-2:]
    (['python3', '-m', 'verl.trainer.main_ppo'], ['overlays/ppo=cpu', 'trainer.total_training_steps=2'])
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from taosr1_verl.integrations.verl.environment import device_env
from taosr1_verl.integrations.verl.recipes import Device, get_recipe, overlay_override


def build_command(
    recipe: str,
    overrides: Sequence[str] = (),
    device: Device = "cpu",
    nproc_per_node: int = 1,
    python: str | None = None,
) -> list[str]:
    """The argument list that runs ``recipe`` (no environment; see :func:`build_env`).

    ``python`` defaults to this interpreter; a job on a cluster passes the name its nodes know.
    """
    spec = get_recipe(recipe)
    python = python or sys.executable
    config = [*spec.config_args(), overlay_override(spec, device)]
    if spec.kind == "sft":
        launcher = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}"]
        return [*launcher, "-m", spec.entry, *config, *overrides]
    return [python, "-m", spec.entry, *config, *overrides]


def build_env(device: Device, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of the trainer: ``base`` (default ``os.environ``) with our verl plugin modules, plus the
    CPU environment on CPU."""
    env = device_env(device, base)
    # Line-buffered child output, so the streamed log keeps up with the run.
    env["PYTHONUNBUFFERED"] = "1"
    return env
