"""First-token label scoring: label probabilities from one prefill pass, and CumPT tiering.

``cumpt`` is pure numpy (its calibration on labelled data is :mod:`taosr1_verl.evaluation.calibration`). The
backends (``hf``, ``vllm_backend``, ``openai_backend``) are built by name through
:mod:`~taosr1_verl.scoring.registry` and import their engines only when constructed.
"""

from taosr1_verl.scoring.cumpt import (
    argmax_levels,
    cumpt_levels,
    cumpt_tiers,
    levels_to_tiers,
    softmax,
)

__all__ = ["argmax_levels", "cumpt_levels", "cumpt_tiers", "levels_to_tiers", "softmax"]
