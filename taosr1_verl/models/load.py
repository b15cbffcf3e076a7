"""Load a model or tokenizer named on the command line, without surprises.

Anything that looks like a path is a local directory: it must exist, and it is loaded with
``local_files_only=True``, so a typo fails at once with the path in the message instead of spending a minute
asking the Hugging Face hub for a repository called ``runs/tiny``. A path is what exists, starts with ``/``,
``.`` or ``~``, has more than one separator, or is ``DIR/NAME`` with ``DIR`` an existing local directory
(``runs/tiny`` next to a ``runs/``). Everything else, a bare name (``gpt2``) or a hub id (``Qwen/Qwen3-8B``
with no ``Qwen/`` here), goes to the hub under the usual ``HF_HUB_OFFLINE`` rules; offline, a ``DIR/NAME``
that is not in the hub cache either is taken for a missing local path.
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
    """True when ``name`` is meant as a local path rather than a hub repository id (``org/name``).

    Example:
        >>> looks_like_path("./m"), looks_like_path("~/m"), looks_like_path("/a/b"), looks_like_path("a/b/c")
        (True, True, True, True)
        >>> looks_like_path("gpt2")
        False
    """
    if isinstance(name, os.PathLike):
        return True
    text = os.fspath(name)
    if text.startswith(("/", ".", "~")) or Path(text).exists():
        return True
    parts = text.replace(os.altsep or os.sep, os.sep).split(os.sep)
    if len(parts) > 2 or (len(parts) == 2 and "" in parts):
        return True
    # DIR/NAME: a hub id unless DIR is a local directory (then NAME is a missing model in it), or the hub is
    # off and its cache does not have it either.
    return len(parts) == 2 and (Path(parts[0]).is_dir() or (_hub_offline() and not _in_hub_cache(text)))


def _hub_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for filename in ("config.json", "tokenizer_config.json"):
        try:
            if isinstance(try_to_load_from_cache(repo_id, filename), str):
                return True
        except ValueError:  # not a valid repo id
            return False
    return False


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
