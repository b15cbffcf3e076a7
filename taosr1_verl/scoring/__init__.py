"""First-token label scoring: label probabilities from one prefill pass, CumPT tiering and calibration.

``cumpt`` is pure numpy. The backends (``hf``, ``vllm_backend``, ``openai_backend``) import their engines
only when constructed.
"""

from taosr1_verl.scoring.cumpt import (
    Calibration,
    argmax_levels,
    calibrate_beta,
    cumpt_levels,
    cumpt_tiers,
    levels_to_tiers,
    softmax,
)

__all__ = ["Calibration", "argmax_levels", "calibrate_beta", "cumpt_levels", "cumpt_tiers", "levels_to_tiers",
           "softmax"]
