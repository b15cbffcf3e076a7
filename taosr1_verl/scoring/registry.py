"""The first-token scoring backends by name: what ``taosr1 score``/``eval --backend`` offer and
:func:`make_scorer` builds. A backend's module (torch, vLLM, an HTTP client) is imported only when it is built.
"""

from __future__ import annotations

from typing import Any

from taosr1_verl.registry import LazyRegistry
from taosr1_verl.schema import LabelSchema

SCORERS = LazyRegistry("scoring backend", {
    "hf": "taosr1_verl.scoring.hf:HFScorer",
    "vllm": "taosr1_verl.scoring.vllm_backend:VLLMScorer",
    "openai": "taosr1_verl.scoring.openai_backend:OpenAIScorer",
})
"""``hf`` (transformers, the default), ``vllm`` (offline engine), ``openai`` (an OpenAI-compatible endpoint)."""


def make_scorer(backend: str, model: str, schema: LabelSchema | str | None = None, *, base_url: str | None = None,
                batch_size: int = 32, block_size: int | None = None, **kwargs: Any) -> Any:
    """Build a :class:`~taosr1_verl.scoring.base.FirstTokenScorer` by backend name; for ``openai``, ``model`` is
    the local tokenizer directory of the model served at ``base_url``. Each backend takes the options it uses
    (:meth:`~taosr1_verl.scoring.base.FirstTokenScorer.open`).

    Example:
        >>> make_scorer("hf", "runs/tiny", "taosr1")                # doctest: +SKIP
    """
    return SCORERS.load(backend).open(model, schema, base_url=base_url, batch_size=batch_size,
                                      block_size=block_size, **kwargs)
