"""Hugging Face backend: one forward pass per batch, logits of the label tokens at the last prompt position.

Shared-prefix reuse: the items of one query share the system prompt and the query line. The prefix is run
once per group; its per-layer K/V are expanded (a view, no copy) across the batch, the item suffixes are
left-padded, and the attention mask and position ids are set so each suffix sees the prefix followed by
its own tokens. The cost then grows with item tokens, not prefix + item tokens per item, and the logits
match the plain forward within float tolerance (tested).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from taosr1_verl.schema import LabelSchema
from taosr1_verl.scoring.base import FirstTokenScorer

logger = logging.getLogger(__name__)


class HFScorer(FirstTokenScorer):
    """First-token scoring with a ``transformers`` causal LM (CPU or GPU).

    Args:
        model: a local model directory (see :mod:`taosr1_verl.models.load`), or an already loaded
            ``PreTrainedModel``.
        tokenizer: the tokenizer (loaded from ``model`` when it is a path and this is ``None``).
        schema: label schema.
        batch_size: items per forward pass.
        reuse_prefix: run the shared prefix once per group (``False``: plain padded forward).
        min_prefix_tokens: below this shared length the plain forward is used.
        device: ``cpu`` or ``cuda``.
        dtype: ``float32`` (default), ``bfloat16`` or ``float16``.

    Example:
        >>> scorer = HFScorer("runs/tiny", schema="taosr1")                      # doctest: +SKIP
        >>> scorer.score_items("oak table", [{"title": "Oak dining table"}])     # doctest: +SKIP
        array([[0.31, 0.22, 0.27, 0.2 ]])
    """

    name = "hf"

    def __init__(self, model: str | os.PathLike[str] | Any, tokenizer: Any = None,
                 schema: LabelSchema | str | None = None, *, batch_size: int = 32, reuse_prefix: bool = True,
                 min_prefix_tokens: int = 8, device: str = "cpu", dtype: str = "float32",
                 max_prompt_tokens: int | None = None) -> None:
        if isinstance(model, str | os.PathLike):
            from taosr1_verl.models.load import load_causal_lm, load_tokenizer, resolve_model

            resolve_model(model)  # before torch is imported: a typo fails at once
            tokenizer = tokenizer or load_tokenizer(model)
            model = load_causal_lm(model, dtype=dtype)
        import torch

        if tokenizer is None:
            raise ValueError("HFScorer: pass the tokenizer when passing a loaded model")
        if max_prompt_tokens is None:
            max_prompt_tokens = getattr(model.config, "max_position_embeddings", None)
        super().__init__(tokenizer, schema, max_prompt_tokens)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.reuse_prefix = reuse_prefix
        self.min_prefix_tokens = min_prefix_tokens
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (tokenizer.eos_token_id or 0))
        self._label_idx = torch.tensor(self.label_ids, device=device)

    # ---- forward passes --------------------------------------------------------------------------------
    def _left_pad(self, seqs: list[list[int]]):
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _plain(self, seqs: list[list[int]]) -> np.ndarray:
        import torch

        ids, mask = self._left_pad(seqs)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                             logits_to_keep=1)
        return out.logits[:, -1, self._label_idx].float().cpu().numpy()

    def _prefix_kv(self, prefix: list[int]) -> list[tuple[Any, Any]]:
        import torch

        ids = torch.tensor([prefix], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _with_prefix(self, kv: list[tuple[Any, Any]], prefix_len: int, suffixes: list[list[int]]) -> np.ndarray:
        import torch
        from transformers import DynamicCache

        b = len(suffixes)
        # expand() is a view: the prefix K/V are not copied per item before attention needs them.
        cache = DynamicCache(ddp_cache_data=[(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in kv])
        ids, smask = self._left_pad(suffixes)
        mask = torch.cat([torch.ones((b, prefix_len), dtype=torch.long, device=self.device), smask], dim=1)
        pos = prefix_len + (smask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                             use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, self._label_idx].float().cpu().numpy()

    @classmethod
    def open(cls, model: str, schema: LabelSchema | str | None = None, *, base_url: str | None = None,
             batch_size: int = 32, block_size: int | None = None, **kwargs: Any) -> HFScorer:
        return cls(model, schema=schema, batch_size=batch_size, **kwargs)

    def _score_group(self, seqs: list[list[int]], prefix_len: int) -> np.ndarray:
        use_prefix = self.reuse_prefix and prefix_len >= self.min_prefix_tokens
        kv = self._prefix_kv(seqs[0][:prefix_len]) if use_prefix else None
        parts = []
        for start in range(0, len(seqs), self.batch_size):
            chunk = seqs[start:start + self.batch_size]
            if kv is not None:
                parts.append(self._with_prefix(kv, prefix_len, [s[prefix_len:] for s in chunk]))
            else:
                parts.append(self._plain(chunk))
        return np.concatenate(parts, axis=0)

    # ---- generation (the "generate" evaluation mode) ---------------------------------------------------
    def generate(self, seqs: list[list[int]], max_new_tokens: int = 256, batch_size: int | None = None,
                 progress: bool = False) -> list[str]:
        """Greedy full responses for token-id prompts (decoded, special tokens kept out)."""
        import torch

        bs = batch_size or self.batch_size
        texts: list[str] = []
        rng = range(0, len(seqs), bs)
        if progress:
            from tqdm.auto import tqdm

            rng = tqdm(rng, desc="generating (hf)", unit="batch")
        for start in rng:
            ids, mask = self._left_pad(seqs[start:start + bs])
            with torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                          do_sample=False, pad_token_id=self.pad_id)
            # Special tokens (end of turn, padding) are dropped; <think> tags are ordinary added tokens.
            texts.extend(self.tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True))
        return texts
