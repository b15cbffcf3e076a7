"""The TaoSR1 reward inside verl 0.9.1's real reward path.

verl's own ``RewardLoopWorker`` (the class its Ray reward workers wrap) is built from a composed
``ppo_trainer`` config naming our function, and scores a ``DataProto`` whose responses were tokenised with
a real tiny tokenizer. No Ray cluster is needed: the worker class is used directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("verl")

REPO = Path(__file__).resolve().parents[3]

RESPONSES = [
    ("4\n<think>\nexact product, colour matches\n</think>", "4", {"score": 1.0, "acc": 1, "format_ok": 1, "pred": 4}),
    ("3\n<think>\nsame category, size unknown\n</think>", 4, {"score": 0.0, "acc": 0, "format_ok": 1, "pred": 3}),
    ("Relevance: 4", "2", {"score": -1.0, "acc": 0, "format_ok": 0, "pred": 0}),
    ("4\n<think>\nlooks fine\n</think>", "1", {"score": 0.0, "acc": 0, "format_ok": 1, "pred": 4, "false_positive": 1}),
]


def _compose(model_dir: Path, path: str, extra: list[str] = ()):
    from hydra import compose, initialize_config_module

    overrides = [
        f"actor_rollout_ref.model.path={model_dir}",
        f"reward.custom_reward_function.path={path}",
        "reward.custom_reward_function.name=compute_score",
        *extra,
    ]
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


def _batch(tokenizer, responses: list[str], golds: list) -> object:
    from verl import DataProto

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Query: oak table\nItem: Oak dining table"}],
        add_generation_prompt=True, tokenize=False,
    )
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r_ids = [tokenizer(r + "<|im_end|>", add_special_tokens=False)["input_ids"] for r in responses]
    width = max(map(len, r_ids))
    pad = tokenizer.pad_token_id
    responses_t = torch.full((len(responses), width), pad, dtype=torch.long)
    mask = torch.zeros((len(responses), len(p_ids) + width), dtype=torch.long)
    for i, ids in enumerate(r_ids):
        responses_t[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(p_ids) + len(ids)] = 1
    prompts_t = torch.tensor([p_ids] * len(responses))
    return DataProto.from_dict(
        tensors={
            "prompts": prompts_t,
            "responses": responses_t,
            "input_ids": torch.cat([prompts_t, responses_t], dim=1),
            "attention_mask": mask,
        },
        non_tensors={
            "data_source": np.array(["taosr1_synthetic"] * len(responses), dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": g} for g in golds], dtype=object),
            "extra_info": np.array([{"index": i} for i in range(len(responses))], dtype=object),
        },
    )


@pytest.mark.parametrize("path", ["pkg://taosr1_verl.rewards", str(REPO / "rewards" / "taosr1_reward.py")])
def test_reward_loop_worker_scores_with_taosr1_reward(tiny_model_dir, tiny_tokenizer, path):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    config = _compose(tiny_model_dir, path)
    worker = RewardLoopWorker(config)
    data = _batch(tiny_tokenizer, [r for r, _, _ in RESPONSES], [g for _, g, _ in RESPONSES])
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(data))

    assert len(outputs) == len(RESPONSES)
    for out, (_, _, want) in zip(outputs, RESPONSES, strict=True):
        info = out["reward_extra_info"]
        assert sorted(info) == sorted(["score", "acc", "format_ok", "pred", "gold", "false_positive"])
        assert out["reward_score"] == want["score"]
        for key, value in want.items():
            assert info[key] == value, (key, info)
    # verl places each score on the last valid response token.
    rm = worker.reward_manager.assemble_rm_scores(data, [o["reward_score"] for o in outputs])
    assert rm.sum(dim=1).tolist() == [w["score"] for _, _, w in RESPONSES]


def test_reward_kwargs_reach_the_function(tiny_model_dir, tiny_tokenizer):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    config = _compose(
        tiny_model_dir,
        "pkg://taosr1_verl.rewards",
        ["+reward.custom_reward_function.reward_kwargs.malformed_penalty=-0.5",
         "+reward.custom_reward_function.reward_kwargs.false_positive_penalty=0.25"],
    )
    worker = RewardLoopWorker(config)
    data = _batch(tiny_tokenizer, [r for r, _, _ in RESPONSES], [g for _, g, _ in RESPONSES])
    scores = [o["reward_score"] for o in worker.loop.run_until_complete(worker.compute_score_batch(data))]
    assert scores == [1.0, 0.0, -0.5, -0.25]


def test_unknown_ground_truth_fails_loudly(tiny_model_dir, tiny_tokenizer):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    worker = RewardLoopWorker(_compose(tiny_model_dir, "pkg://taosr1_verl.rewards"))
    data = _batch(tiny_tokenizer, ["4\n<think>x</think>"], ["Excelent"])
    with pytest.raises(ValueError, match="Excelent"):
        worker.loop.run_until_complete(worker.compute_score_batch(data))
