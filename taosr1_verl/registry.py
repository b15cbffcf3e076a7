"""Named implementations imported only when one is used: ``{"name": "package.module:Attribute"}``.

Backends pull in torch, vLLM or an HTTP client. A registry lets the CLI offer their names (argparse
``choices``) and build one by name without importing the others, and keeps the name list in one place.

Example:
    >>> reg = LazyRegistry("codec", {"json": "json:dumps"})
    >>> reg.names, reg.load("json")([1])
    (('json',), '[1]')
    >>> reg.load("yaml")
    Traceback (most recent call last):
    ...
    ValueError: unknown codec 'yaml'; choose one of ['json']
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


class LazyRegistry:
    """``name -> "module:attribute"``, imported on :meth:`load`."""

    def __init__(self, kind: str, targets: Mapping[str, str]) -> None:
        self.kind = kind
        """What the entries are, for messages (``scoring backend``)."""
        self.targets = dict(targets)

    @property
    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order (the first is the usual default)."""
        return tuple(self.targets)

    def load(self, name: str) -> Any:
        """The object registered as ``name``; ``ValueError`` naming the choices for an unknown name."""
        try:
            target = self.targets[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {sorted(self.targets)}") from None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)
