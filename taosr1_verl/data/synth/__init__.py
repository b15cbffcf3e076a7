"""Synthetic catalog with a rule knowledge base, a rule-based CoT teacher and its imperfect twin (offline, seeded)."""

from taosr1_verl.data.synth.catalog import (
    DEFAULT_LABEL_MIX,
    QUERY_KINDS,
    SynthConfig,
    generate_synthetic,
    iter_synthetic,
    parse_mix,
)
from taosr1_verl.data.synth.kb import RuleKB, judge, load_rules
from taosr1_verl.data.synth.teacher import findings_level, rule_reasoning, rule_teacher
from taosr1_verl.data.synth.teacher_errors import (
    ImperfectTeacher,
    TeacherErrors,
    load_teacher_errors,
    teacher_for,
)

__all__ = [
    "DEFAULT_LABEL_MIX", "QUERY_KINDS", "ImperfectTeacher", "RuleKB", "SynthConfig", "TeacherErrors",
    "findings_level", "generate_synthetic", "iter_synthetic", "judge", "load_rules", "load_teacher_errors",
    "parse_mix", "rule_reasoning", "rule_teacher", "teacher_for",
]
