"""The recipes shipped inside the package: ``sft.yaml`` and ``grpo.yaml`` (verl), ``dpo.yaml`` (TRL) and the
device overlays ``overlays/{ppo,sft}/{cpu,gpu}.yaml``.

They are package data, so an installed wheel finds them without a source checkout:

- verl's entry points take them by package: ``python -m verl.trainer.main_ppo
  --config-path=pkg://taosr1_verl.recipes --config-name=grpo`` (what ``taosr1 recipe run`` does, locally and
  through ``ray job submit``);
- a user's own recipe YAML extends them by listing ``pkg://taosr1_verl.recipes`` (and verl's
  ``pkg://verl.trainer.config``) in its ``hydra.searchpath``; ``recipes/my_grpo.yaml`` in the repository is
  such a file.

Example::

    >>> from taosr1_verl.recipes import CONFIG_PATH, recipe_file
    >>> CONFIG_PATH
    'pkg://taosr1_verl.recipes'
    >>> recipe_file("grpo").name
    'grpo.yaml'
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

CONFIG_PATH = f"pkg://{__name__}"
"""Hydra's name for this directory (``--config-path`` or a ``hydra.searchpath`` entry)."""


def recipes_dir() -> Path:
    """The directory holding the recipe YAML files (inside the installed package)."""
    return Path(str(importlib.resources.files(__name__)))


def recipe_file(name: str) -> Path:
    """Path of ``<name>.yaml`` (``sft``, ``grpo`` or ``dpo``); ``FileNotFoundError`` names what exists."""
    path = recipes_dir() / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in recipes_dir().glob("*.yaml"))
        raise FileNotFoundError(f"no recipe {name!r} in {recipes_dir()}; known: {known}")
    return path


def overlay_file(kind: str, device: str) -> Path:
    """Path of the device overlay ``overlays/<kind>/<device>.yaml`` (kind ``ppo`` or ``sft``)."""
    path = recipes_dir() / "overlays" / kind / f"{device}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no {device} overlay for {kind!r} trainers: {path}")
    return path
