"""Shared fixtures. Everything is built offline: no hub access (HF_HUB_OFFLINE is forced)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WANDS_QUERIES = SHARED / "data" / "wands" / "query.csv"


def _wands_queries(limit: int = 300) -> list[str]:
    """Real search queries (WANDS query.csv, tab separated) when the shared folder is present."""
    if not WANDS_QUERIES.exists():
        # Without ../shared (e.g. a clone elsewhere), the synthetic catalog's queries stand in.
        from taosr1_verl.data import generate_synthetic

        queries = list(dict.fromkeys(p.query for p in generate_synthetic(8 * limit, seed=0)))
        return queries[:limit]
    with WANDS_QUERIES.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [r["query"] for r in rows[:limit] if r.get("query")]


@pytest.fixture(scope="session")
def wands_queries() -> list[str]:
    return _wands_queries()


def tiny_corpus(queries: list[str]) -> list[str]:
    """Text the tiny tokenizer is trained on: our prompts and well-formed responses."""
    from taosr1_verl.prompts import PromptConfig, build_messages
    from taosr1_verl.response import format_response
    from taosr1_verl.schema import TAOSR1

    corpus = []
    for i, q in enumerate(queries):
        lv = TAOSR1.levels[i % 4]
        msgs = build_messages(q, f"{q} item {i}", {"colour": "red", "material": "oak"},
                              config=PromptConfig(instructions="compact"))
        corpus.extend(m["content"] for m in msgs)
        corpus.append(format_response(lv.label, f"query wants {q}; verdict: {lv.name}"))
    return corpus


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, wands_queries: list[str]) -> Path:
    """A randomly initialised tiny Qwen2 (head_dim 32) with a BPE tokenizer trained on our prompts."""
    from taosr1_verl.models.tiny import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("models") / "tiny-qwen2", tiny_corpus(wands_queries))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def verl_rows(queries: list[str], n: int = 32) -> tuple[list[dict], list[dict]]:
    """``n`` SFT rows (``messages``) and RL rows (verl ``RLHFDataset`` layout) with labels cycling over 4..1."""
    from taosr1_verl.prompts import PromptConfig, build_messages
    from taosr1_verl.response import format_response
    from taosr1_verl.schema import TAOSR1

    sft, rl = [], []
    for i, q in enumerate(queries[:n]):
        lv = TAOSR1.levels[i % 4]
        msgs = build_messages(q, f"{q} item {i}", {"colour": "red"}, config=PromptConfig(instructions="compact"))
        answer = format_response(lv.label, f"query wants {q}; verdict: {lv.name}")
        sft.append({"messages": [*msgs, {"role": "assistant", "content": answer}]})
        rl.append({
            "data_source": "taosr1_synth", "prompt": msgs, "ability": "relevance",
            "reward_model": {"style": "rule", "ground_truth": lv.label},
            "extra_info": {"split": "train", "index": i},
        })
    return sft, rl


@pytest.fixture(scope="session")
def verl_parquets(tmp_path_factory: pytest.TempPathFactory, wands_queries: list[str]) -> dict[str, Path]:
    """``sft.parquet`` and ``rl.parquet`` of 32 rows each (:func:`verl_rows`) for the real verl trainers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path_factory.mktemp("verl_data")
    sft, rl = verl_rows(wands_queries)
    paths = {"sft": out / "sft.parquet", "rl": out / "rl.parquet"}
    pq.write_table(pa.Table.from_pylist(sft), paths["sft"])
    pq.write_table(pa.Table.from_pylist(rl), paths["rl"])
    return paths


@pytest.fixture(scope="session")
def grpo_small() -> list[str]:
    """Overrides that make the GRPO recipe a two-core run: 4 prompts x 4 rollouts of 32 tokens, the recipe's
    own trainer (taosr1_sync) and replay buffer. A random model writes no valid label, so every group is
    constant and the TaoSR1 rule would evict them all: the pass-rate band [0, 1] keeps every group (the
    tracker still counts each)."""
    return [
        "data.train_batch_size=4", "data.max_prompt_length=512", "data.max_response_length=32",
        "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
        "++trainer.v1.sampler.sampler_kwargs.low=0.0", "++trainer.v1.sampler.sampler_kwargs.high=1.0",
        "trainer.test_freq=-1", "trainer.val_before_train=false", "data.val_max_samples=4", "trainer.save_freq=1",
    ]
