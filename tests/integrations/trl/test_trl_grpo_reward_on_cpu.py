"""The same TaoSR1 reward drives TRL's real GRPOTrainer (2 steps on a tiny offline model)."""

from __future__ import annotations

import pytest

pytest.importorskip("trl")


@pytest.mark.slow
def test_trl_grpo_trainer_runs_with_taosr1_reward(tiny_model_dir, tmp_path, wands_queries):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from taosr1_verl.prompts import PromptConfig, build_messages
    from taosr1_verl.rewards import make_trl_reward

    rows = [
        {"prompt": build_messages(q, f"{q} deluxe", config=PromptConfig(instructions="compact")),
         "ground_truth": str(4 - i % 4)}
        for i, q in enumerate(wands_queries[:8])
    ]
    calls: list[list[float]] = []
    reward = make_trl_reward()

    def taosr1_reward(prompts, completions, **kwargs):
        scores = reward(prompts=prompts, completions=completions, **kwargs)
        calls.append(scores)
        return scores

    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=16,
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        bf16=False,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        reward_funcs=[taosr1_reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
    )
    trainer.train()

    assert trainer.state.global_step == 2
    assert len(calls) >= 2 and all(len(c) == 4 for c in calls)
    # A random model writes no well-formed answers: every reward is the malformed penalty, and TRL logged it.
    assert all(s == -1.0 for c in calls for s in c)
    logged = [h for h in trainer.state.log_history if "rewards/taosr1_reward/mean" in h]
    assert logged and all(h["rewards/taosr1_reward/mean"] == -1.0 for h in logged)
