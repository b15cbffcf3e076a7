"""Entry file for verl recipes: TaoSR1's difficulty-based dynamic sampling replay buffer.

    trainer.v1.sampler.custom_sampler.path: samplers/taosr1_sampler.py    # or pkg://taosr1_verl.integrations.verl.replay_buffer
    trainer.v1.sampler.custom_sampler.name: TaoSR1ReplayBuffer            # TaoSR1ReplayBufferAsync for async modes

All logic lives in :mod:`taosr1_verl.integrations.verl.replay_buffer`; see docs/sampling.md.
"""

from taosr1_verl.integrations.verl.replay_buffer import TaoSR1ReplayBuffer, TaoSR1ReplayBufferAsync

__all__ = ["TaoSR1ReplayBuffer", "TaoSR1ReplayBufferAsync"]
