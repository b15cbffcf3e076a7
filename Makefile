# The two commands of the README. Both build .venv first (idempotent, see scripts/setup.sh).
.PHONY: setup demo test lint bench

setup:
	@bash scripts/setup.sh

# The main job: the whole TaoSR1 method end to end on CPU (synthetic data, tiny model).
demo: setup
	.venv/bin/taosr1 demo $(ARGS)

# The test suite (what CI runs, including the slow end-to-end tests).
test: setup
	.venv/bin/python -m pytest -q $(ARGS)

lint: setup
	.venv/bin/ruff check taosr1_verl rewards samplers tests bench
