"""The pass@N generation backends by name: what ``taosr1 passn --backend`` offers and :func:`get_backend`
builds. A backend's module (vLLM, transformers) is imported only when it is built."""

from __future__ import annotations

from taosr1_verl.pairs.generate import Backend
from taosr1_verl.registry import LazyRegistry

BACKENDS = LazyRegistry("generation backend", {
    "vllm": "taosr1_verl.pairs.vllm_backend:VLLMBackend",
    "hf": "taosr1_verl.pairs.hf:HFBackend",
})
"""``vllm`` (the default of ``taosr1 passn``) and ``hf`` (the fallback that needs only transformers)."""


def get_backend(name: str, model_path: str, **kwargs: object) -> Backend:
    """Build a backend by name (``hf`` or ``vllm``); extra keyword arguments go to its constructor.

    Example (not run: loads a model):
        >>> be = get_backend("hf", "/path/to/model", threads=1)  # doctest: +SKIP
    """
    return BACKENDS.load(name)(model_path, **kwargs)
