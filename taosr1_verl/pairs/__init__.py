"""Stage 2 of TaoSR1: pass@N sampling, grading, pass@k, the DPO pair rule and its files.

Task logic only (numpy / pure Python); generation backends (``hf``, ``vllm``) import their frameworks
inside, at run time. See ``docs/pairs.md``.
"""

from taosr1_verl.pairs.passk import mean_pass_at_k, pass_at_k, pass_at_k_curve
from taosr1_verl.pairs.rule import OUTCOMES, PairConfig, PairingReport, PromptGroup, build_pairs, decide

__all__ = [
    "OUTCOMES",
    "PairConfig",
    "PairingReport",
    "PromptGroup",
    "build_pairs",
    "decide",
    "mean_pass_at_k",
    "pass_at_k",
    "pass_at_k_curve",
]
