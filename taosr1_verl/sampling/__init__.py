"""Difficulty-based dynamic sampling for GRPO (TaoSR1 stage 3), in plain numpy.

- :mod:`~taosr1_verl.sampling.group_rule`: keep a group when its correct count/rate lies in a band.
- :mod:`~taosr1_verl.sampling.tracker`: per-prompt recency-weighted pass-rate beliefs, seeded from pass@N.
- :mod:`~taosr1_verl.sampling.policy`: which prompts to roll out next (informative, class-balanced, seeded).
- :mod:`~taosr1_verl.sampling.ledger`: a replay buffer's group accounting (classify, feed the tracker, count).
- :mod:`~taosr1_verl.sampling.torch_sampler`: the policy as a torch ``Sampler`` (imports torch; import it
  from its module).

The verl adapters live in :mod:`taosr1_verl.integrations.verl`.
"""

from taosr1_verl.sampling.group_rule import KEPT, KINDS, REASONS, TOO_EASY, TOO_HARD, GroupOutcomes, GroupRule
from taosr1_verl.sampling.ledger import GroupBudgetExceeded, GroupLedger, GroupRecord
from taosr1_verl.sampling.policy import PolicyConfig, PolicyStats, RefillPlanner, SelectionPolicy
from taosr1_verl.sampling.tracker import DifficultyTracker, SeedReport, TrackerConfig

__all__ = [
    "KEPT",
    "KINDS",
    "REASONS",
    "TOO_EASY",
    "TOO_HARD",
    "DifficultyTracker",
    "GroupBudgetExceeded",
    "GroupLedger",
    "GroupOutcomes",
    "GroupRecord",
    "GroupRule",
    "PolicyConfig",
    "PolicyStats",
    "RefillPlanner",
    "SeedReport",
    "SelectionPolicy",
    "TrackerConfig",
]
