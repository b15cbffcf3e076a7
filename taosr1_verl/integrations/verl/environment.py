"""The environment of a verl process started for our recipes, on CPU or GPU (no verl import here).

verl imports the modules named in ``VERL_USE_EXTERNAL_MODULES`` inside ``import verl``, in every process it
starts (the driver, Ray actors, vLLM workers). Our recipes need two there: :data:`RUNTIME_MODULE` (the CPU
platform and fixes, active only with ``VERL_PLATFORM=cpu``; elsewhere one TRL-compatibility fix) and
:data:`TRAINER_MODULE` (registers the ``taosr1_sync`` V1 trainer).

A CPU run has two halves:

- environment variables, :func:`cpu_env` (the platform switch, vLLM-CPU settings, the modules above);
- config overrides, the overlay YAML files ``overlays/<ppo|sft>/cpu.yaml`` of :mod:`taosr1_verl.recipes`
  (the single source; :func:`cpu_overrides` turns them into ``++key=value`` overrides for verl's stock
  configs).

Example::

    >>> from taosr1_verl.integrations.verl.environment import cpu_env
    >>> env = cpu_env({})
    >>> env["VERL_PLATFORM"], env["VLLM_TARGET_DEVICE"]
    ('cpu', 'cpu')
    >>> env["VERL_USE_EXTERNAL_MODULES"].split(",") == list(PLUGIN_MODULES)
    True
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Literal

RUNTIME_MODULE = "taosr1_verl.integrations.verl.cpu_runtime"
"""The CPU platform and fixes; importing it outside verl does nothing."""

TRAINER_MODULE = "taosr1_verl.integrations.verl.trainer"
"""Registers the ``taosr1_sync`` V1 trainer (difficulty-aware prompt selection) on import."""

PLUGIN_MODULES: tuple[str, ...] = (RUNTIME_MODULE, TRAINER_MODULE)
"""Every module verl must import in each of its processes for our recipes."""

TrainerKind = Literal["ppo", "sft"]

CPU_ENV: dict[str, str] = {
    # Select the CPU platform our runtime module registers (verl would fall back to "nvidia").
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


def with_plugin_modules(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with :data:`PLUGIN_MODULES` appended to ``VERL_USE_EXTERNAL_MODULES``
    (modules already listed are kept). On a GPU this is the whole environment change."""
    env = dict(os.environ if base is None else base)
    modules = [m for m in env.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m.strip()]
    modules += [m for m in PLUGIN_MODULES if m not in modules]
    env["VERL_USE_EXTERNAL_MODULES"] = ",".join(modules)
    return env


def cpu_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a verl run on CPU: :func:`with_plugin_modules` of ``base`` plus :data:`CPU_ENV`."""
    env = with_plugin_modules(base)
    env.update(CPU_ENV)
    return env


def device_env(device: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """:func:`cpu_env` on ``cpu``, :func:`with_plugin_modules` on ``gpu``."""
    return cpu_env(base) if device == "cpu" else with_plugin_modules(base)


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

    from taosr1_verl.recipes import overlay_file

    data = yaml.safe_load(overlay_file(kind, "cpu").read_text(encoding="utf-8")) or {}
    data.pop("defaults", None)
    overrides = []
    for key, value in _flatten(data):
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = "null"
        elif isinstance(value, list | Mapping):
            text = json.dumps(value)
        else:
            text = str(value)
        overrides.append(f"++{key}={text}")
    return overrides
