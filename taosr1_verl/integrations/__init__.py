"""Thin adapters to the training and serving frameworks (verl, TRL, vLLM).

The modules that verl loads as plug-ins import verl at import time (``verl.cpu_platform``,
``verl.replay_buffer``, ``verl.trainer``, ``verl.sft_dataset``); they are imported only by verl (through the
recipes' ``pkg://`` paths and ``VERL_USE_EXTERNAL_MODULES``) and by each other. Every other module here imports
its framework inside functions, so task code may import it at import time without loading a framework: the
demo reads verl's logs through ``verl.verl_logs`` and launches runs through ``verl.supervise``, and the vLLM
backends start and stop their engines through ``vllm_engine``. ``scripts/import_graph.py`` draws who imports
what (docs/architecture.md).
"""
