"""Synthetic catalog with a rule knowledge base and a rule-based CoT teacher (offline, seeded)."""

from taosr1_verl.data.synth.catalog import (
    DEFAULT_LABEL_MIX,
    QUERY_KINDS,
    SynthConfig,
    generate_synthetic,
    iter_synthetic,
    parse_mix,
)
from taosr1_verl.data.synth.kb import RuleKB, judge, load_rules
from taosr1_verl.data.synth.teacher import rule_reasoning, rule_teacher

__all__ = [
    "DEFAULT_LABEL_MIX", "QUERY_KINDS", "RuleKB", "SynthConfig", "generate_synthetic", "iter_synthetic",
    "judge", "load_rules", "parse_mix", "rule_reasoning", "rule_teacher",
]
