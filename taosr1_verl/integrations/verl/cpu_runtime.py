"""Run verl 0.9.1's real trainers (``sft_trainer``, ``main_ppo`` with vLLM rollouts) on a CPU-only host.

verl imports the modules named in ``VERL_USE_EXTERNAL_MODULES`` inside ``import verl``, in every process
it starts (the driver, Ray actors, vLLM workers). Naming this module there (see
:mod:`taosr1_verl.integrations.verl.environment`) makes each of those processes register the CPU platform
(:mod:`.cpu_platform`) and apply the CPU fixes (:mod:`.patches`), but only when the process runs on the
CPU platform (``VERL_PLATFORM=cpu``). On a GPU cluster it applies only the version-compatibility fix for
TRL 1.x (``patches.apply_compat_patches``).

Importing it where verl is not loaded (our CLI, the launcher) does nothing: this module is a hook, and
only verl's own import runs it. The environment and overlay that go with it live in
:mod:`taosr1_verl.integrations.verl.environment`.
"""

from __future__ import annotations

import logging
import os

from taosr1_verl.integrations.verl.environment import on_cpu_platform

logger = logging.getLogger(__name__)


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
