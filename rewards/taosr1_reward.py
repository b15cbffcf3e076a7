"""verl entry file for the TaoSR1 reward.

    reward.custom_reward_function.path=rewards/taosr1_reward.py
    reward.custom_reward_function.name=compute_score

Equivalent to ``path=pkg://taosr1_verl.rewards``; all logic lives in ``taosr1_verl.rewards``.
"""

from taosr1_verl.rewards import compute_score

__all__ = ["compute_score"]
