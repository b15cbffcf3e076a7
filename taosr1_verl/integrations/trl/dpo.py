"""TaoSR1 stage 2 training: DPO with TRL's ``DPOTrainer`` against the SFT model as reference.

The recipe is a YAML file (``dpo.yaml`` of :mod:`taosr1_verl.recipes`, or the user's own) mapped onto :class:`DPORecipe`; any ``DPOConfig`` field
not named there goes under ``trl_args``. The policy and the reference both start from the SFT checkpoint:
a Hugging Face directory, or a verl FSDP checkpoint which is merged to one first
(:func:`taosr1_verl.integrations.verl.checkpoint.ensure_hf_checkpoint`). The output directory is a plain
HF checkpoint (safetensors + tokenizer) that verl's GRPO recipe loads as ``actor_rollout_ref.model.path``.

Multi-GPU / multi-node: the same command under accelerate, e.g.
``accelerate launch --num_processes 8 -m taosr1_verl.cli dpo model_path=... train_file=... output_dir=...``
(add ``--config_file`` for DeepSpeed/FSDP and ``--num_machines/--machine_rank/--main_process_ip`` per node).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from taosr1_verl.files import atomic_dir

logger = logging.getLogger(__name__)

PAIR_COLUMNS: tuple[str, ...] = ("prompt", "chosen", "rejected")


@dataclass
class DPORecipe:
    """The DPO stage settings (see the shipped ``dpo.yaml`` for the commented defaults)."""

    model_path: str
    """SFT checkpoint: HF directory or verl FSDP checkpoint (merged automatically)."""
    train_file: str
    """Pairs parquet/JSONL from ``taosr1 passn``/``taosr1 pairs`` (conversational prompt/chosen/rejected)."""
    output_dir: str
    """Where the DPO'd HF checkpoint is written."""
    ref_model_path: str | None = None
    """Reference model; ``None`` = the SFT checkpoint itself (TaoSR1)."""
    eval_file: str | None = None
    beta: float = 0.1
    loss_type: str = "sigmoid"
    sft_weight: float = 0.0
    """Weight of a negative log-likelihood term on the chosen answer added to the DPO loss (TRL's
    ``loss_type=[loss_type, "sft"]``, RPO-style). It keeps DPO from lowering the chosen answers' likelihood
    along with the rejected ones, which small models are prone to; 0 = plain DPO (TaoSR1)."""
    learning_rate: float = 1e-6
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.05
    """Warm-up: an int = steps, a float < 1 = fraction of all steps (TaoSR1 sibling: 5%)."""
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int | None = 1024
    logging_steps: int = 10
    save_strategy: str = "no"
    seed: int = 42
    bf16: bool = False
    gradient_checkpointing: bool = False
    dtype: str = "float32"
    report_to: str = "none"
    use_cpu: bool = False
    trl_args: dict[str, Any] = field(default_factory=dict)
    """Any other ``trl.DPOConfig`` argument."""

    def __post_init__(self) -> None:
        from taosr1_verl.config_types import coerce_fields

        coerce_fields(self, "dpo recipe: ")  # YAML reads 1e-6 as text; learning_rate=fast fails here, by name
        if not isinstance(self.trl_args, dict):
            raise ValueError(f"dpo recipe: trl_args must be a mapping, got {self.trl_args!r}")
        own = sorted(set(self.trl_args) & {f.name for f in fields(self)})
        if own:
            raise ValueError(f"dpo recipe: {own} are recipe keys: set them as {own[0]}=..., not trl_args.{own[0]}")
        if self.beta <= 0:
            raise ValueError(f"dpo recipe: beta must be > 0, got {self.beta}")
        if self.sft_weight < 0:
            raise ValueError(f"dpo recipe: sft_weight must be >= 0, got {self.sft_weight}")
        if {"loss_type", "loss_weights"} & set(self.trl_args):
            raise ValueError("dpo recipe: set loss_type / sft_weight, not trl_args.loss_type / trl_args.loss_weights")
        if "trust_remote_code" in self.trl_args and self.trl_args["trust_remote_code"]:
            raise ValueError("dpo recipe: trust_remote_code is not allowed")


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | None = None) -> DPORecipe:
    """Read a DPO recipe YAML; ``overrides`` are ``key=value`` strings (values parsed as YAML).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.yaml"
        >>> _ = p.write_text("model_path: m\\ntrain_file: t.parquet\\noutput_dir: o\\n")
        >>> load_recipe(p, ["beta=0.2", "trl_args.max_grad_norm=0.5"]).trl_args
        {'max_grad_norm': 0.5}
    """
    import yaml

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such recipe")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a DPO recipe must be a mapping")
    data = dict(data.get("dpo", data))
    for ov in overrides or []:
        if "=" not in ov:
            raise ValueError(f"override {ov!r} must look like key=value")
        key, value = ov.split("=", 1)
        parsed = yaml.safe_load(value)
        if key.startswith("trl_args."):
            data.setdefault("trl_args", {})[key.split(".", 1)[1]] = parsed
        else:
            data[key] = parsed
    known = {f.name for f in fields(DPORecipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{p}: unknown DPO recipe keys {unknown}; put DPOConfig arguments under trl_args")
    missing = [k for k in ("model_path", "train_file", "output_dir") if not data.get(k)]
    if missing:
        raise ValueError(f"{p}: missing required keys {missing}")
    return DPORecipe(**data)


def load_pairs(path: str | os.PathLike[str]) -> Any:
    """The pairs file as a ``datasets.Dataset`` with only the TRL columns (provenance columns dropped)."""
    from datasets import Dataset

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such pairs file")
    ds = Dataset.from_json(str(p)) if p.suffix in (".jsonl", ".json") else Dataset.from_parquet(str(p))
    missing = [c for c in PAIR_COLUMNS if c not in ds.column_names]
    if missing:
        raise ValueError(f"{p}: not a pairs file, missing columns {missing}")
    if ds.num_rows == 0:
        raise ValueError(f"{p}: no pairs to train on")
    return ds.select_columns(list(PAIR_COLUMNS))


def run_dpo(recipe: DPORecipe) -> tuple[Path, list[dict[str, Any]]]:
    """Train with TRL's ``DPOTrainer``; returns the output HF directory and the trainer's log history."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from taosr1_verl.integrations.trl.compat import fix_optional_import_checks, prepare_model_for_trl

    fix_optional_import_checks()  # TRL 0.27 (verl's GPU stack) with transformers 5
    from trl import DPOConfig, DPOTrainer

    from taosr1_verl.integrations.verl.checkpoint import ensure_hf_checkpoint

    model_path = str(ensure_hf_checkpoint(recipe.model_path))
    ref_path = str(ensure_hf_checkpoint(recipe.ref_model_path)) if recipe.ref_model_path else None
    train = load_pairs(recipe.train_file)
    Path(recipe.output_dir).parent.mkdir(parents=True, exist_ok=True)
    evald = load_pairs(recipe.eval_file) if recipe.eval_file else None
    dtype = getattr(torch, recipe.dtype)
    out = Path(recipe.output_dir)
    # Trainer scratch (intermediate checkpoints, resumable) beside the final directory, which appears
    # only once complete.
    work = out.parent / f"{out.name}.work"
    args = DPOConfig(
        output_dir=str(work),
        beta=recipe.beta,
        loss_type=[recipe.loss_type, "sft"] if recipe.sft_weight > 0 else [recipe.loss_type],
        loss_weights=[1.0, recipe.sft_weight] if recipe.sft_weight > 0 else None,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler_type,
        warmup_steps=recipe.warmup_steps,
        num_train_epochs=recipe.num_train_epochs,
        max_steps=recipe.max_steps,
        per_device_train_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        max_length=recipe.max_length,
        logging_steps=recipe.logging_steps,
        save_strategy=recipe.save_strategy,
        seed=recipe.seed,
        bf16=recipe.bf16,
        gradient_checkpointing=recipe.gradient_checkpointing,
        report_to=recipe.report_to,
        use_cpu=recipe.use_cpu,
        **recipe.trl_args,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ref = (
        AutoModelForCausalLM.from_pretrained(ref_path, dtype=dtype, trust_remote_code=False, use_safetensors=True)
        if ref_path and os.path.realpath(ref_path) != os.path.realpath(model_path)
        else None  # TRL makes a frozen copy of the policy's starting point: the SFT model
    )
    logger.info("DPO: %d pairs, policy and reference from %s", train.num_rows, model_path if ref is None else f"{model_path} / {ref_path}")
    policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, trust_remote_code=False,
                                                  use_safetensors=True)
    prepare_model_for_trl(policy)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=train, eval_dataset=evald,
                         processing_class=tokenizer)
    trainer.train()
    with atomic_dir(out) as tmp:
        trainer.save_model(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return out, list(trainer.state.log_history)
