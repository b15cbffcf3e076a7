"""verl's multi-turn SFT dataset with a loss weight on the label token (``data.custom_cls`` in the SFT recipe).

In the post-CoT format the label is the first token of the answer and the only token first-token serving
reads, but plain SFT averages the loss over every answer token: with a 70-token reasoning the label gets
1/70 of the gradient, and a tiny model learns the reasoning (copying, mostly) long before the label.
``data.label_weight`` multiplies the loss of the first token of every trained (assistant) turn; verl's
``sft_loss`` already treats the loss mask as weights (``masked_sum(log_prob, loss_mask) / loss_mask.sum()``
in the no-padding layout), so nothing else changes. ``label_weight: 1`` is verl's own loss.

What the weight buys on the demo's tiny model is measured by ``bench/bench_sft.py`` (README, the label weight
table).

Recipe::

    data:
      custom_cls: {path: pkg://taosr1_verl.integrations.verl.sft_dataset, name: LabelWeightedSFTDataset}
      label_weight: 20.0
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

logger = logging.getLogger(__name__)

LABEL_WEIGHT_KEY = "label_weight"
"""The key under ``data`` that holds the weight."""


def check_label_weight(weight: object, pad_mode: str | None) -> float:
    """``weight`` as a float, or ``ValueError`` if it is not a number > 0 or needs a layout verl ignores it in."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        raise ValueError(f"data.{LABEL_WEIGHT_KEY} must be a number > 0, got {weight!r}")
    if weight != 1 and pad_mode != "no_padding":
        # verl's right-padded path reads the mask as a boolean (response_mask.to(bool)): no weights.
        raise ValueError(f"data.{LABEL_WEIGHT_KEY}={weight} needs data.pad_mode=no_padding (got {pad_mode!r}): "
                         "verl's right-padded SFT loss ignores token weights")
    return float(weight)


def weight_first_tokens(loss_mask: torch.Tensor, weight: float) -> torch.Tensor:
    """A float copy of ``loss_mask`` (1 on trained tokens) with ``weight`` on the first token of each run of them.

    Example:
        >>> weight_first_tokens(torch.tensor([0, 0, 1, 1, 1, 0, 1, 1]), 5.0).tolist()
        [0.0, 0.0, 5.0, 1.0, 1.0, 0.0, 5.0, 1.0]
    """
    mask = loss_mask.to(torch.float32)
    on = loss_mask != 0
    starts = on.clone()
    starts[1:] &= ~on[:-1]
    mask[starts] = mask[starts] * weight
    return mask


class LabelWeightedSFTDataset(MultiTurnSFTDataset):
    """:class:`~verl.utils.dataset.multiturn_sft_dataset.MultiTurnSFTDataset` whose loss mask weighs the
    first token of each assistant turn (the post-CoT label) by ``config.label_weight`` (default 1)."""

    def __init__(self, parquet_files: Any, tokenizer: Any, config: Any = None, processor: Any = None,
                 max_samples: int = -1):
        config = config or {}
        weight = config.get(LABEL_WEIGHT_KEY)
        self.label_weight = check_label_weight(1.0 if weight is None else weight, config.get("pad_mode", "right"))
        super().__init__(parquet_files, tokenizer, config=config, processor=processor, max_samples=max_samples)
        logger.info("SFT label token weight %s", self.label_weight)

    def __getitem__(self, item: int) -> dict[str, Any]:
        row = super().__getitem__(item)
        if self.label_weight != 1.0:
            row["loss_mask"] = weight_first_tokens(row["loss_mask"], self.label_weight)
        return row
