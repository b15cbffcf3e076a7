"""Hugging Face ``generate`` backend for pass@N sampling (the fallback; no vLLM needed)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from taosr1_verl.pairs.generate import Messages, Sample, SamplingConfig, render_prompts

logger = logging.getLogger(__name__)


class HFBackend:
    """Batched sampling with ``model.generate(num_return_sequences=N)``.

    Args:
        model_path: a local Hugging Face model directory (safetensors; remote code is never trusted).
        batch_size: prompts per ``generate`` call (each expands to ``batch_size * N`` sequences).
        threads: torch intra-op threads; ``None`` keeps torch's setting. On small shared CPUs one thread
            is often much faster than two (OpenMP barrier stalls; see docs/pairs.md).
        dtype: ``float32`` (CPU default) or ``bfloat16``/``float16`` on GPUs.
        device: ``cpu`` or e.g. ``cuda``.

    Example (not run: loads a model):
        >>> be = HFBackend("/models/sft", threads=1)  # doctest: +SKIP
        >>> be.generate([[{"role": "user", "content": "q"}]], SamplingConfig(n=2))  # doctest: +SKIP
    """

    name = "hf"

    def __init__(
        self,
        model_path: str,
        batch_size: int = 8,
        threads: int | None = None,
        dtype: str = "float32",
        device: str = "cpu",
    ) -> None:
        from taosr1_verl.models.load import load_causal_lm, load_tokenizer, resolve_model

        resolve_model(model_path)  # before torch is imported: a typo fails at once
        self.tokenizer = load_tokenizer(model_path)
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        self.batch_size = batch_size
        self.device = device
        self.model = load_causal_lm(model_path, dtype=dtype, use_safetensors=True).to(device)
        self.model.eval()
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(self.tokenizer.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else next(iter(self.eos_ids))

    def generate(
        self, prompts: Sequence[Messages], config: SamplingConfig, indices: Sequence[int] | None = None
    ) -> list[list[Sample]]:
        import torch

        ids = render_prompts(self.tokenizer, prompts)
        out: list[list[Sample]] = []
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start : start + self.batch_size]
            width = max(len(x) for x in chunk)
            # Left padding: every sequence's last prompt token sits at the same position.
            input_ids = torch.tensor([[self.pad_id] * (width - len(x)) + x for x in chunk], device=self.device)
            mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in chunk], device=self.device)
            # One seed per chunk keeps runs reproducible; HF has no per-request seed.
            torch.manual_seed(config.seed + (indices[start] if indices else start))
            with torch.inference_mode():
                gen = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    do_sample=True,
                    temperature=config.temperature,
                    top_p=config.top_p,
                    top_k=0,
                    max_new_tokens=config.max_new_tokens,
                    min_new_tokens=config.max_new_tokens if config.ignore_eos else None,
                    num_return_sequences=config.n,
                    pad_token_id=self.pad_id,
                    eos_token_id=sorted(self.eos_ids),
                )
            new = gen[:, width:].tolist()
            for p in range(len(chunk)):
                samples = []
                for row in new[p * config.n : (p + 1) * config.n]:
                    n_tok = len(row)
                    for j, t in enumerate(row):
                        if t in self.eos_ids and not config.ignore_eos:
                            n_tok = j + 1
                            break
                    text = self.tokenizer.decode(row[:n_tok], skip_special_tokens=True)
                    samples.append(Sample(text=text, n_tokens=n_tok))
                out.append(samples)
        return out

    def close(self) -> None:
        self.model = None
