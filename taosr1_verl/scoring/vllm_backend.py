"""vLLM offline backend: one generated token per prompt, with the log-probabilities of the label tokens.

``SamplingParams(max_tokens=1, logprob_token_ids=label_ids)`` returns the full-vocabulary log-prob of each
label token at the first response position; a softmax over them is the softmax over the label logits.
Prefix caching reuses the KV blocks of the shared prefix (system prompt + query) across items. Only whole
blocks are cached, so the block size bounds the reuse: vLLM-CPU's default of 128 tokens caches nothing of a
short prefix. By default the backend takes the finest block the platform's attention kernels accept
(:func:`finest_block_size`): 32 on vLLM-CPU 0.32, whose kernels reject 16 ("No common block size for 16
(CPU_ATTN: [MultipleOf(32)])"); an 81-token prefix then reuses 64 tokens (:func:`reusable_prefix_tokens`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from taosr1_verl.integrations.vllm_engine import cpu_engine_env, on_cpu, release_llm, start_llm
from taosr1_verl.schema import LabelSchema
from taosr1_verl.scoring.base import FirstTokenScorer

logger = logging.getLogger(__name__)

FALLBACK_BLOCK_SIZE = 32
"""Used when the attention backend cannot be asked (the smallest size vLLM-CPU's kernels take)."""


def finest_block_size(supported: Sequence[Any]) -> int:
    """Smallest KV block size in an attention backend's ``get_supported_kernel_block_sizes()`` list.

    Entries are ints or ``MultipleOf(n)`` (anything with ``base``); prefix caching reuses whole blocks only,
    so the finest block reuses the most of a short shared prefix.

    Example:
        >>> from vllm.v1.attention.backend import MultipleOf                # doctest: +SKIP
        >>> finest_block_size([MultipleOf(32)]), finest_block_size([16, 32, 64])  # doctest: +SKIP
        (32, 16)
    """
    sizes = [int(getattr(x, "base", x)) for x in supported]
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"no usable block size in {supported!r}")
    return min(sizes)


def platform_block_size() -> int:
    """Finest KV block size the current platform's default attention backend accepts (32 on vLLM-CPU)."""
    if on_cpu():
        cpu_engine_env()
    try:
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

            return finest_block_size(CPUAttentionBackend.get_supported_kernel_block_sizes())
    except Exception:  # another vLLM layout: keep the size known to work on CPU
        logger.debug("could not ask vLLM for its kernel block sizes", exc_info=True)
    return FALLBACK_BLOCK_SIZE


def reusable_prefix_tokens(prefix_len: int, block_size: int) -> int:
    """Tokens of a shared prefix that prefix caching can reuse: whole blocks only, and never the last
    prompt token (its logits must be computed).

    Example:
        >>> reusable_prefix_tokens(81, 32), reusable_prefix_tokens(81, 128), reusable_prefix_tokens(64, 32)
        (64, 0, 64)
    """
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    return (max(prefix_len, 0) // block_size) * block_size


class VLLMScorer(FirstTokenScorer):
    """First-token scoring with vLLM's offline ``LLM`` engine.

    Args:
        model: a local model directory (no ``trust_remote_code``).
        schema: label schema.
        prefix_caching: enable automatic prefix caching.
        block_size: KV block size in tokens (only whole blocks of a shared prefix are reused); ``None``: the
            finest the platform accepts (:func:`platform_block_size`).
        max_model_len: longest prompt + 1 token.
        dtype: ``float32`` (CPU default here), ``bfloat16``, ...
        engine_kwargs: passed on to ``vllm.LLM``.

    Example:
        >>> with VLLMScorer("runs/tiny") as s:                                  # doctest: +SKIP
        ...     s.score_items("oak table", [{"title": "Oak dining table"}])
    """

    name = "vllm"

    def __init__(self, model: str | os.PathLike[str], schema: LabelSchema | str | None = None, *,
                 prefix_caching: bool = True, block_size: int | None = None, max_model_len: int = 1024,
                 dtype: str = "float32", seed: int = 0, engine_kwargs: dict[str, Any] | None = None) -> None:
        from taosr1_verl.models.load import resolve_model

        resolve_model(model)  # a missing local directory fails before vLLM is imported for the block size
        if block_size is None:
            block_size = platform_block_size()
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self.reuse_prefix = True
        """``False``: requests skip reading the prefix cache (the no-reuse baseline on the same engine)."""
        self.last_cached_tokens: list[int] = []
        """Prompt tokens served from the prefix cache, per row of the last scored group."""
        self.llm = start_llm(model, dtype=dtype, max_model_len=max_model_len, enable_prefix_caching=prefix_caching,
                             block_size=block_size, seed=seed, **(engine_kwargs or {}))
        super().__init__(self.llm.get_tokenizer(), schema, max_prompt_tokens=max_model_len - 1)

    @classmethod
    def open(cls, model: str, schema: LabelSchema | str | None = None, *, base_url: str | None = None,
             batch_size: int = 32, block_size: int | None = None, **kwargs: Any) -> VLLMScorer:
        return cls(model, schema=schema, block_size=block_size, **kwargs)

    def _score_group(self, seqs: list[list[int]], prefix_len: int) -> np.ndarray:
        from vllm import SamplingParams

        # detokenize=False: only the label log-probs are read, never the sampled token's text.
        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=self.label_ids,
                                detokenize=False, skip_reading_prefix_cache=not self.reuse_prefix)
        prompts = [{"prompt_token_ids": s} for s in seqs]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        self.last_cached_tokens = [int(o.num_cached_tokens or 0) for o in outputs]
        rows = []
        for i, out in enumerate(outputs):
            lps = out.outputs[0].logprobs[0] if out.outputs and out.outputs[0].logprobs else None
            if lps is None or any(t not in lps for t in self.label_ids):
                raise RuntimeError(f"vLLM returned no label log-probs for row {i}")
            rows.append([lps[t].logprob for t in self.label_ids])
        return np.asarray(rows, dtype=np.float64)

    def generate(self, seqs: list[list[int]], max_new_tokens: int = 256, progress: bool = False) -> list[str]:
        """Greedy full responses (the "generate" evaluation mode and the benchmark's baseline)."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0,
                                skip_reading_prefix_cache=not self.reuse_prefix)
        outs = self.llm.generate([{"prompt_token_ids": s} for s in seqs], params, use_tqdm=progress)
        return [o.outputs[0].text for o in outs]

    def close(self) -> None:
        release_llm(self)
