"""DifficultySampler drives TRL's real GRPOTrainer (2 steps, tiny offline model), fed back by the reward.

The sampler replaces TRL's RepeatSampler through the supported override (``_get_train_sampler``); the reward
wrapper turns each group's rewards into tracker evidence, as a TRL user of this package would.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trl")


@pytest.mark.slow
def test_grpo_trainer_uses_difficulty_sampler(tiny_model_dir, tmp_path, wands_queries):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from taosr1_verl.prompts import PromptConfig, build_messages
    from taosr1_verl.rewards import get_scorer
    from taosr1_verl.sampling import DifficultyTracker, GroupRule, PolicyConfig, SelectionPolicy
    from taosr1_verl.sampling.torch_sampler import DifficultySampler

    G = 4
    n_rows = 16
    rows = [
        {"prompt": build_messages(q, f"{q} deluxe", config=PromptConfig(instructions="compact")),
         "ground_truth": str(4 - i % 4), "index": i}
        for i, q in enumerate(wands_queries[:n_rows])
    ]
    tracker = DifficultyTracker(n_rows)
    # Prompts 0-7 are known to be solved (pass@N 5/5 many times over): the policy must not pick them.
    tracker.update(np.arange(8), 64, 64)
    levels = np.array([4 - i % 4 for i in range(n_rows)])
    policy = SelectionPolicy(tracker, GroupRule(), PolicyConfig(group_size=G, recheck_prob=0.0, seed=0),
                             levels=levels)
    scorer = get_scorer()
    seen: list[int] = []

    def taosr1_reward(prompts, completions, index, ground_truth, **kwargs):
        accs = [scorer(c[-1]["content"] if isinstance(c, list) else c, g)["acc"]
                for c, g in zip(completions, ground_truth, strict=True)]
        idx = np.asarray(index)
        for u in np.unique(idx):
            tracker.update([u], int(np.sum(np.asarray(accs)[idx == u])), int(np.sum(idx == u)), step=len(seen))
        seen.extend(int(i) for i in idx)
        return [float(a) for a in accs]

    class DifficultyGRPOTrainer(GRPOTrainer):
        def _get_train_sampler(self, dataset=None):
            per_gen = self.args.generation_batch_size // self.num_generations
            return DifficultySampler(policy, chunk_size=per_gen, repeat=self.num_generations)

    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=G,
        max_completion_length=8, max_steps=2, learning_rate=1e-3, logging_steps=1, report_to=[],
        use_cpu=True, save_strategy="no", bf16=False, seed=0,
    )
    trainer = DifficultyGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        reward_funcs=[taosr1_reward], args=args, train_dataset=Dataset.from_list(rows),
    )
    trainer.train()

    assert trainer.state.global_step == 2
    assert len(seen) >= 2 * G
    assert all(i >= 8 for i in seen)  # the solved prompts were skipped
    # Each prompt came as one group of G rollouts, and every group reached the tracker.
    assert all(c % G == 0 for c in np.bincount(seen))
    assert int(tracker.groups[8:].sum()) == len(seen) // G
