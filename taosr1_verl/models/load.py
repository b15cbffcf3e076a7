"""Load a model or tokenizer named on the command line, without surprises.

Anything that looks like a path (it exists, contains a path separator, or starts with ``.`` or ``~``) is a
local directory: it must exist, and it is loaded with ``local_files_only=True``, so a typo fails at once with
the path in the message instead of spending a minute asking the Hugging Face hub for a repository called
``runs/tiny``. Only a bare name (``gpt2``) goes to the hub, under the usual ``HF_HUB_OFFLINE`` rules.
Remote code is never trusted. Failures are :class:`~taosr1_verl.errors.UserError` naming the path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from taosr1_verl.errors import UserError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
"""A local tokenizer directory holds at least one of these."""


def looks_like_path(name: str | os.PathLike[str]) -> bool:
    """True when ``name`` is meant as a local path rather than a hub repository id.

    Example:
        >>> looks_like_path("runs/tiny"), looks_like_path("./m"), looks_like_path("~/m"), looks_like_path("gpt2")
        (True, True, True, False)
    """
    text = os.fspath(name)
    seps = (os.sep, os.altsep) if os.altsep else (os.sep,)
    return isinstance(name, os.PathLike) or any(s in text for s in seps) or text.startswith((".", "~")) \
        or Path(text).exists()


def resolve_model(name: str | os.PathLike[str], what: str = "model") -> tuple[str, bool]:
    """``(name or local path, is_local)``. A local one must be a directory; a ``what == "model"`` directory
    must hold ``config.json``. Raises :class:`UserError` otherwise, before anything is loaded."""
    if not looks_like_path(name):
        return os.fspath(name), False
    path = Path(os.fspath(name)).expanduser()
    if not path.exists():
        raise UserError(f"{name}: no such {what} directory")
    if not path.is_dir():
        raise UserError(f"{name}: is a file; give the {what} directory (a Hugging Face layout: config.json, "
                        "tokenizer files, weights)")
    if what == "model" and not (path / "config.json").is_file():
        raise UserError(f"{name}: not a model directory (no config.json)")
    if what == "tokenizer" and not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise UserError(f"{name}: not a tokenizer directory (none of {', '.join(TOKENIZER_FILES)})")
    return str(path), True


def _first_line(e: BaseException) -> str:
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)


def _load(loader_name: str, name: str | os.PathLike[str], what: str, **kwargs: Any) -> Any:
    target, local = resolve_model(name, what)  # before importing transformers: a typo fails at once
    import transformers

    loader = getattr(transformers, loader_name)
    try:
        if local:
            kwargs["local_files_only"] = True
        return loader.from_pretrained(target, trust_remote_code=False, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        where = "" if local else " (not a local directory, so it was looked up on the Hugging Face hub)"
        raise UserError(f"{name}: cannot load a {what}{where}: {_first_line(e)}") from e


def load_tokenizer(name: str | os.PathLike[str], **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained`` for a local directory (or a hub name), with a one-line error."""
    return _load("AutoTokenizer", name, "tokenizer", **kwargs)


def load_causal_lm(name: str | os.PathLike[str], **kwargs: Any) -> Any:
    """``AutoModelForCausalLM.from_pretrained`` for a local directory (or a hub name), with a one-line error."""
    return _load("AutoModelForCausalLM", name, "model", **kwargs)
