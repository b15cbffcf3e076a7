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
