"""TRL adapters: the DPO stage runner (``dpo.py``). Import the submodule you need."""
