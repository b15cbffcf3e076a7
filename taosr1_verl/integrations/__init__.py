"""Thin adapters to the training and serving frameworks (verl, TRL, vLLM).

Everything here may import the framework it adapts; nothing outside ``integrations`` imports these
modules at import time.
"""
