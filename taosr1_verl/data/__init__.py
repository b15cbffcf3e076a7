"""Data: raw judgments or the synthetic catalog -> pairs -> RL / SFT / eval parquet. See ``docs/data.md``."""

from taosr1_verl.data.builders import (
    BuildConfig,
    BuildReport,
    balance_classes,
    class_cv,
    iter_pairs_parquet,
    read_teacher_jsonl,
    write_eval_parquet,
    write_pairs_parquet,
    write_rl_parquet,
    write_sft_parquet,
    write_teacher_jsonl,
)
from taosr1_verl.data.pairs import Pair, QuerySpec
from taosr1_verl.data.synth import generate_synthetic, rule_teacher

__all__ = [
    "BuildConfig", "BuildReport", "Pair", "QuerySpec", "balance_classes", "class_cv", "generate_synthetic",
    "iter_pairs_parquet", "read_teacher_jsonl", "rule_teacher", "write_eval_parquet", "write_pairs_parquet",
    "write_rl_parquet", "write_sft_parquet", "write_teacher_jsonl",
]
