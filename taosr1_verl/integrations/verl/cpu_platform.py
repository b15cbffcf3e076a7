"""A CPU device platform for verl 0.9.1, registered in ``verl.plugin.platform.PlatformRegistry``.

verl routes every device call through a platform object (``verl.utils.device.get_torch_device()``,
``get_device_name()``, ``get_nccl_backend()``, ...). verl ships CUDA, NPU and ROCm platforms only, so on
a CPU-only machine it falls back to "nvidia" and the first ``torch.cuda`` call fails. This platform
answers those calls for the CPU:

- device name ``"cpu"``, collective backend ``gloo``;
- ``current_device()`` returns the string ``"cpu"``: verl passes it to ``tensor.to(...)`` and
  ``torch.device(...)``, where an int would mean accelerator 0;
- the device module is ``torch.cpu`` plus the memory, RNG and IPC calls verl makes on
  ``torch.cuda`` (no-ops, or host-memory figures for ``mem_get_info``);
- the Ray resource name stays ``"GPU"``: verl's resource pools ask Ray for ``num_gpus``, and the CPU
  overlay starts Ray with one logical GPU per "device" (see :mod:`.environment`).

Selected with ``VERL_PLATFORM=cpu``; :mod:`taosr1_verl.integrations.verl.cpu_runtime` registers it in
every verl process.

Example::

    >>> import os; os.environ["VERL_PLATFORM"] = "cpu"
    >>> from taosr1_verl.integrations.verl.cpu_platform import register_cpu_platform
    >>> register_cpu_platform()                       # doctest: +SKIP
    >>> from verl.utils.device import get_device_name  # doctest: +SKIP
    >>> get_device_name()                              # doctest: +SKIP
    'cpu'
"""

from __future__ import annotations

import logging
import os
import types
from contextlib import contextmanager
from typing import Any

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

logger = logging.getLogger(__name__)

PLATFORM_NAME = "cpu"
"""The name ``VERL_PLATFORM`` selects."""


def _host_memory() -> tuple[int, int]:
    """(available, total) host memory in bytes."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.available), int(vm.total)
    except ImportError:  # psutil comes with ray; keep a fallback for light installs
        page = os.sysconf("SC_PAGE_SIZE")
        return page * os.sysconf("SC_AVPHYS_PAGES"), page * os.sysconf("SC_PHYS_PAGES")


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


def _zero(*_args: Any, **_kwargs: Any) -> int:
    return 0


def _build_device_module() -> types.ModuleType:
    """``torch.cpu`` extended with the ``torch.cuda`` calls verl makes, as a module object.

    Allocator statistics are reported as 0 (there is no device allocator); verl only logs them.
    """
    mod = types.ModuleType("taosr1_verl_cpu_device")
    for name in dir(torch.cpu):
        if not name.startswith("_"):
            setattr(mod, name, getattr(torch.cpu, name))
    mod.__doc__ = "torch.cpu plus the device calls verl expects of torch.cuda"
    # Memory management: nothing to release or cap on the host.
    for name in ("empty_cache", "ipc_collect", "reset_peak_memory_stats", "reset_max_memory_allocated",
                 "set_per_process_memory_fraction"):
        setattr(mod, name, _noop)
    for name in ("memory_allocated", "max_memory_allocated", "memory_reserved", "max_memory_reserved"):
        setattr(mod, name, _zero)
    mod.memory_stats = lambda *a, **k: {}
    mod.mem_get_info = lambda *a, **k: _host_memory()
    # RNG: the CPU generator is torch's default generator.
    mod.get_rng_state = lambda *a, **k: torch.get_rng_state()
    mod.set_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    mod.manual_seed = lambda seed: torch.manual_seed(seed)
    mod.manual_seed_all = lambda seed: torch.manual_seed(seed)
    mod.get_device_name = lambda *a, **k: "cpu"
    mod.is_available = lambda: True
    return mod


_DEVICE_MODULE = _build_device_module()


class PlatformCPU(PlatformBase):
    """verl platform backend for CPU-only hosts (laptops, CI runners)."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return _DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never auto-detected: a GPU host that lacks nvidia-smi must not silently train on its CPU.
        # Select explicitly with VERL_PLATFORM=cpu.
        return False

    def current_device(self) -> str:  # type: ignore[override]
        # A string, not 0: verl passes this to .to()/torch.device(), where 0 means "cuda:0".
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets it for "GPU" actors; harmless on a CPU host and keeps verl's bookkeeping uniform.
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        # verl's resource pools request `num_gpus`; the CPU overlay gives Ray logical GPUs to match.
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def rollout_env_vars(self) -> dict[str, str]:
        return {"VLLM_TARGET_DEVICE": "cpu"}

    def cudart(self) -> Any:
        return None


def register_cpu_platform() -> type[PlatformCPU]:
    """Register :class:`PlatformCPU` under ``"cpu"`` (idempotent) and return it.

    Registration alone changes nothing: verl uses it only when ``VERL_PLATFORM=cpu``.
    """
    if PlatformRegistry.get(PLATFORM_NAME) is not PlatformCPU:
        PlatformRegistry.register(platform=PLATFORM_NAME)(PlatformCPU)
    return PlatformCPU
