"""Turn a verl FSDP checkpoint (e.g. from ``verl.trainer.sft_trainer``) into a Hugging Face directory.

verl saves FSDP shards (``model_world_size_{W}_rank_{r}.pt`` + ``fsdp_config.json`` + a ``huggingface/``
folder with config and tokenizer, and the full weights too when ``checkpoint.save_contents`` lists
``hf_model``). TRL, vLLM and verl's own ``model.path`` need a plain HF directory. When the trainer wrote
the weights into ``huggingface/`` we copy that folder: it is the trained state exactly (fp32 here) and needs
no process. Otherwise we run verl's shipped merger in a subprocess (an argument list, never a shell)::

    python -m verl.model_merger merge --backend fsdp --local_dir CKPT --target_dir OUT

which writes bfloat16 weights whatever the training dtype (verl 0.9.1 hard-codes it; about 1e-3 off the
trained weights) and costs about 10 s of start-up.

The merger reads the shards with ``torch.load(weights_only=False)``, i.e. it unpickles them, and unpickling
a file can run any code. It is therefore never used silently: :func:`merge_fsdp_checkpoint` refuses unless
the caller passes ``allow_pickle=True`` (for checkpoints it produced itself), and then logs a warning naming
the shard files. The safe alternative is the trainer's own safetensors export: ``checkpoint.save_contents``
listing ``hf_model`` (our SFT and GRPO recipes do), which is copied instead.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from taosr1_verl.errors import UserError
from taosr1_verl.files import atomic_dir

logger = logging.getLogger(__name__)

_SHARD = re.compile(r"model_world_size_(\d+)_rank_(\d+)\.pt$")


def is_hf_checkpoint(path: str | os.PathLike[str]) -> bool:
    """True for a directory with ``config.json`` and safetensors (or bin) weights."""
    p = Path(path)
    has_weights = any(p.glob("*.safetensors")) or any(p.glob("pytorch_model*.bin"))
    return (p / "config.json").exists() and has_weights


def find_fsdp_checkpoint(path: str | os.PathLike[str]) -> Path | None:
    """The directory holding verl FSDP shards at or under ``path`` (``global_step_*`` picks the latest
    step; ``actor/`` and ``model/`` sub-folders are looked into), or ``None``."""
    p = Path(path)
    if not p.is_dir():
        return None
    steps = sorted(
        (d for d in p.glob("global_step_*") if d.is_dir() and d.name.split("_")[-1].isdigit()),
        key=lambda d: int(d.name.split("_")[-1]),
    )
    candidates = [p, p / "actor", p / "model"]
    if steps:
        candidates += [steps[-1], steps[-1] / "actor", steps[-1] / "model"]
    for c in candidates:
        if c.is_dir() and any(_SHARD.search(f.name) for f in c.iterdir()):
            return c
    return None


SAFE_EXPORT = ("save the checkpoint with its safetensors export (checkpoint.save_contents listing hf_model, as "
               "our recipes do)")
PICKLE_ADVICE = f"{SAFE_EXPORT}, or pass allow_pickle=True only for a checkpoint you produced yourself"


def merge_fsdp_checkpoint(
    local_dir: str | os.PathLike[str], target_dir: str | os.PathLike[str], timeout_s: float | None = 3600,
    prefer_export: bool = True, allow_pickle: bool = False,
) -> Path:
    """An HF checkpoint of the verl FSDP checkpoint at ``local_dir``, written to ``target_dir`` atomically:
    a copy of the trainer's own ``huggingface/`` export when it holds the weights (and ``prefer_export``),
    else verl's model merger's output (bfloat16 weights).

    The merger unpickles the shards (``torch.load(weights_only=False)``), which can run code from the files:
    without ``allow_pickle=True`` that path raises :class:`~taosr1_verl.errors.UserError` naming the shards,
    and with it a warning names them.

    Example (not run: needs a verl checkpoint):
        >>> merge_fsdp_checkpoint("ckpt/sft/global_step_100/actor", "ckpt/sft_hf")  # doctest: +SKIP
    """
    src = find_fsdp_checkpoint(local_dir)
    if src is None:
        raise FileNotFoundError(f"{local_dir}: no verl FSDP shards (model_world_size_*_rank_*.pt) found")
    export = src / "huggingface"
    use_export = prefer_export and is_hf_checkpoint(export)
    if not use_export:
        shards = ", ".join(sorted(f.name for f in src.iterdir() if _SHARD.search(f.name)))
        what = (f"{src} has no safetensors export ({export} holds no weights)" if prefer_export
                else f"prefer_export=False for {src}")
        if not allow_pickle:
            raise UserError(f"{what}; converting it means verl's model merger unpickling {shards} "
                            f"(torch.load(weights_only=False) can run code from the files): {PICKLE_ADVICE}")
        logger.warning("%s: verl's model merger will unpickle %s with torch.load(weights_only=False), which can "
                       "run code from the files (allowed by allow_pickle=True). Safer: %s", src, shards,
                       SAFE_EXPORT)
    out = Path(target_dir)
    with atomic_dir(out) as tmp:
        if use_export:
            logger.info("copying verl's HF export %s -> %s", export, out)
            shutil.copytree(export, tmp, dirs_exist_ok=True)
        else:
            cmd = [sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp",
                   "--local_dir", str(src), "--target_dir", str(tmp)]
            logger.info("merging verl FSDP checkpoint %s -> %s", src, out)
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"verl model merger failed on {src} (exit {proc.returncode}): {proc.stderr[-2000:]}")
        if not (tmp / "config.json").exists():
            raise RuntimeError(f"verl model merger wrote no config.json for {src}")
    return out


def ensure_hf_checkpoint(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
                         allow_pickle: bool = False) -> Path:
    """``path`` itself when it is an HF directory; else the HF copy of its verl FSDP checkpoint (in
    ``cache_dir``, default ``<path>/hf_merged``), converted once by :func:`merge_fsdp_checkpoint` (which
    unpickles shards only with ``allow_pickle``)."""
    p = Path(path)
    if is_hf_checkpoint(p):
        return p
    target = Path(cache_dir) if cache_dir else p / "hf_merged"
    if is_hf_checkpoint(target):
        return target
    if find_fsdp_checkpoint(p) is None:
        raise FileNotFoundError(f"{p}: neither a Hugging Face model directory nor a verl FSDP checkpoint")
    return merge_fsdp_checkpoint(p, target, allow_pickle=allow_pickle)
