"""A small fixed (query, items) catalogue and a tiny offline scoring model built from it.

Used by the scoring tests and ``bench/bench_scoring.py``: no download, seconds to build. The model is randomly initialised, so its probabilities are arbitrary but deterministic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from taosr1_verl.prompts import PromptConfig, build_messages
from taosr1_verl.response import format_response
from taosr1_verl.schema import TAOSR1

DEMO_QUERIES: tuple[str, ...] = (
    "red oak dining table",
    "wool rug without fringe",
    "cheap office chair like Herman Miller",
    "queen bed frame under 300 dollars",
)
_NOUNS = ("table", "rug", "chair", "bed frame", "lamp", "sofa", "desk", "mirror")
_COLOURS = ("red", "white", "black", "grey", "blue", "green")
_MATERIALS = ("oak", "wool", "steel", "pine", "leather", "cotton")


def demo_items(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` deterministic catalogue items (``title``, ``attributes``), varied in length.

    Example:
        >>> demo_items(1)[0]["title"]
        'red oak table'
    """
    items = []
    for i in range(n):
        j = i + seed
        colour, material, noun = _COLOURS[j % 6], _MATERIALS[(j // 6) % 6], _NOUNS[(j // 36 + j) % 8]
        extra = " with drawers" * (j % 3)
        items.append({"title": f"{colour} {material} {noun}{extra}",
                      "attributes": {"colour": colour, "material": material, "price": 40 + 13 * (j % 17)}})
    return items


def demo_corpus(n_items: int = 48) -> list[str]:
    """Texts the tiny tokenizer is trained on: rendered prompts (both instruction styles) and responses."""
    from taosr1_verl.models.tiny import CHATML_TEMPLATE  # noqa: F401  (the template the prompts are rendered with)

    texts = []
    for q in DEMO_QUERIES:
        for it in demo_items(n_items):
            for instr in ("compact", "full"):
                msgs = build_messages(q, it["title"], it["attributes"], config=PromptConfig(instructions=instr))
                texts.extend(m["content"] for m in msgs)
    for lv in TAOSR1.levels:
        texts.append(format_response(lv.label, f"query understanding ... verdict: {lv.name}"))
    texts.append("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n")
    return texts


def build_demo_model(out_dir: str | os.PathLike[str], weight_scale: float = 8.0, **tiny_kwargs: Any) -> Path:
    """A tiny Qwen2 (hidden 64, 2 layers, head_dim 32) with a tokenizer trained on :func:`demo_corpus`.

    The random weights are multiplied by ``weight_scale``: at the default init the label distribution is
    almost uniform whatever the input, which would let a backend reading the wrong position pass an
    agreement test. An existing complete directory is returned as is.
    """
    import shutil
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from taosr1_verl.files import atomic_dir
    from taosr1_verl.models.tiny import TinyModelConfig, build_tiny_qwen2

    out = Path(out_dir)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp, atomic_dir(out) as staged:
        base = build_tiny_qwen2(Path(tmp) / "base", demo_corpus(), TinyModelConfig(**tiny_kwargs))
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" not in name:
                    p.mul_(weight_scale)
        model.save_pretrained(staged, safe_serialization=True)
        AutoTokenizer.from_pretrained(base).save_pretrained(staged)
        shutil.copy(base / "generation_config.json", staged / "generation_config.json")
    return out
