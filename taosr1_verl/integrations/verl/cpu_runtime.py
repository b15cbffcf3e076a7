"""Run verl 0.9.1's real trainers (``sft_trainer``, ``main_ppo`` with vLLM rollouts) on a CPU-only host.

verl imports the modules named in ``VERL_USE_EXTERNAL_MODULES`` inside ``import verl``, in every process
it starts (the driver, Ray actors, vLLM workers). Naming this module there makes each of those processes
register the CPU platform (:mod:`.cpu_platform`) and apply the CPU fixes (:mod:`.patches`), but only
when the process runs on the CPU platform (``VERL_PLATFORM=cpu``). On a GPU cluster importing this
module applies only the version-compatibility fix for TRL 1.x (``patches.apply_compat_patches``), which
the launcher therefore lists in ``VERL_USE_EXTERNAL_MODULES`` on every device.

The CPU overlay has two halves:

- environment variables, :func:`cpu_env` (the platform, this module, vLLM-CPU settings);
- config overrides, the overlay YAML files ``recipes/overlays/<ppo|sft>/cpu.yaml`` (the single source;
  :func:`cpu_overrides` turns them into ``++key=value`` command-line overrides for runs that do not use
  our recipes, e.g. verl's stock ``ppo_trainer``).

Example::

    >>> from taosr1_verl.integrations.verl.cpu_runtime import cpu_env
    >>> env = cpu_env({})
    >>> env["VERL_PLATFORM"], env["VLLM_TARGET_DEVICE"]
    ('cpu', 'cpu')
    >>> "taosr1_verl.integrations.verl.cpu_runtime" in env["VERL_USE_EXTERNAL_MODULES"]
    True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

MODULE = __name__
"""What ``VERL_USE_EXTERNAL_MODULES`` must name."""

TRAINER_MODULE = "taosr1_verl.integrations.verl.trainer"
"""Registers the ``taosr1_sync`` V1 trainer (difficulty-aware prompt selection) on import."""

PLUGIN_MODULES: tuple[str, ...] = (MODULE, TRAINER_MODULE)
"""Every module verl must import in each of its processes for our recipes."""

TrainerKind = Literal["ppo", "sft"]

CPU_ENV: dict[str, str] = {
    # Select the CPU platform registered below (verl would fall back to "nvidia").
    "VERL_PLATFORM": "cpu",
    # verl registers its FSDP engines for cuda/npu only; their code is device-neutral.
    "VERL_ENGINE_DEVICE": "cuda",
    # vLLM-CPU: build for the CPU and give the KV cache 1 GiB (the default, 4 GiB, is wasted on tiny models).
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    # Rust tokenizers fork-safety warnings flood the log under Ray.
    "TOKENIZERS_PARALLELISM": "false",
}
"""Environment of every verl process on a CPU host (plus ``VERL_USE_EXTERNAL_MODULES``, see :func:`cpu_env`)."""


def on_cpu_platform(environ: Mapping[str, str] | None = None) -> bool:
    """True when verl is told to run on the CPU platform (``VERL_PLATFORM=cpu``)."""
    env = os.environ if environ is None else environ
    return env.get("VERL_PLATFORM", "").strip().lower() == "cpu"


def cpu_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a verl run on CPU: ``base`` (default ``os.environ``) plus :data:`CPU_ENV`,
    with this module appended to ``VERL_USE_EXTERNAL_MODULES`` (other modules listed there are kept)."""
    env = with_runtime_module(base)
    env.update(CPU_ENV)
    return env


def with_runtime_module(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with :data:`PLUGIN_MODULES` appended to ``VERL_USE_EXTERNAL_MODULES``
    (modules already listed are kept). On a GPU this is the whole environment change."""
    env = dict(os.environ if base is None else base)
    modules = [m for m in env.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m.strip()]
    modules += [m for m in PLUGIN_MODULES if m not in modules]
    env["VERL_USE_EXTERNAL_MODULES"] = ",".join(modules)
    return env


def recipes_dir() -> Path:
    """The ``recipes/`` directory: ``$TAOSR1_RECIPES_DIR`` or the one next to the package (source tree)."""
    override = os.environ.get("TAOSR1_RECIPES_DIR")
    path = Path(override) if override else Path(__file__).resolve().parents[3] / "recipes"
    if not path.is_dir():
        raise FileNotFoundError(
            f"recipes directory not found at {path}; set TAOSR1_RECIPES_DIR to the repository's recipes/"
        )
    return path


def overlay_file(kind: TrainerKind, device: str = "cpu") -> Path:
    """Path of an overlay YAML (``recipes/overlays/<kind>/<device>.yaml``)."""
    path = recipes_dir() / "overlays" / kind / f"{device}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no {device} overlay for {kind!r} trainers: {path}")
    return path


def _flatten(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, Mapping) and node:
        out: list[tuple[str, Any]] = []
        for k, v in node.items():
            out.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return [(prefix, node)]


def cpu_overrides(kind: TrainerKind) -> list[str]:
    """The CPU overlay of ``kind`` as Hydra command-line overrides (``++key=value``).

    For running verl's stock configs on CPU; our recipes select the overlay file directly
    (``overlays/ppo=cpu``). Example: ``cpu_overrides("sft")`` contains ``"++trainer.device=cpu"``.
    """
    import yaml

    data = yaml.safe_load(overlay_file(kind).read_text(encoding="utf-8")) or {}
    data.pop("defaults", None)
    overrides = []
    for key, value in _flatten(data):
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = "null"
        elif isinstance(value, list | Mapping):
            import json

            text = json.dumps(value)
        else:
            text = str(value)
        overrides.append(f"++{key}={text}")
    return overrides


_ACTIVE = False


def activate() -> bool:
    """Register the CPU platform and apply the CPU fixes in this process (idempotent).

    Also replaces a platform singleton that verl may already have resolved to a GPU platform.
    Returns True on the first activation.
    """
    global _ACTIVE
    if _ACTIVE:
        return False
    from verl.plugin.platform import platform_manager

    from taosr1_verl.integrations.verl.cpu_platform import PlatformCPU, register_cpu_platform
    from taosr1_verl.integrations.verl.patches import apply_cpu_patches

    register_cpu_platform()
    current = platform_manager._current_platform  # private: verl resolves it lazily, once
    if current is not None and not isinstance(current, PlatformCPU):
        platform_manager.set_platform(PlatformCPU())
    applied = apply_cpu_patches()
    _ACTIVE = True
    logger.debug("taosr1 CPU runtime active (pid %d): %s", os.getpid(), applied)
    return True


def _import_hook() -> None:
    import sys

    if "verl" not in sys.modules:
        # Imported by our own code (CLI, launcher), not by verl: stay inert and light. Inside verl
        # processes, `import verl` imports this module while verl is loading.
        return
    from taosr1_verl.integrations.verl.patches import apply_compat_patches

    apply_compat_patches()
    if on_cpu_platform():
        activate()


_import_hook()
