"""The discrete student: built from an :class:`Architecture`, trained by distillation, exported to ONNX.

The student keeps only the chosen fields and MLP widths (skips removed), so its cost is what the latency
table predicts. It outputs the label probabilities in ``schema.levels`` order; the pre-ranking score is the
expected relevance ``probs @ levels``. Distillation is the soft cross-entropy to the teacher's
probabilities (KL divergence up to the teacher's constant entropy).

Example:
    >>> from taosr1_verl.autofas.features import FeatureConfig, field_specs
    >>> cfg = FeatureConfig(n_buckets=64)
    >>> net = StudentNet(Architecture(("text_match", "price"), (16, "skip")), field_specs(cfg), cfg, n_levels=4)
    >>> net(torch.zeros(3, 6), torch.zeros(3, 4)).shape
    torch.Size([3, 4])
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from taosr1_verl.autofas.features import FeatureConfig, FieldSpec
from taosr1_verl.autofas.runtime import export_onnx, ort_session, time_per_item_us, torch_threads
from taosr1_verl.autofas.space import Architecture, FieldEncoder

logger = logging.getLogger(__name__)


def distill_loss(logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """Soft-label cross-entropy ``-sum_k t_k log s_k``, averaged over the batch."""
    return -(teacher_probs * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def kl_divergence(student_probs: np.ndarray, teacher_probs: np.ndarray) -> float:
    """Mean ``KL(teacher || student)`` in nats (0 when the student copies the teacher)."""
    t = np.clip(np.asarray(teacher_probs, dtype=np.float64), 1e-12, 1.0)
    s = np.clip(np.asarray(student_probs, dtype=np.float64), 1e-12, 1.0)
    return float(np.mean(np.sum(t * (np.log(t) - np.log(s)), axis=1)))


class StudentNet(nn.Module):
    """Kept field encoders -> concatenation -> MLP of the chosen widths -> softmax over levels.

    ``forward`` takes one tensor per kept field, positionally in ``arch.fields`` order (the ONNX inputs).
    """

    def __init__(self, arch: Architecture, specs: Sequence[FieldSpec], config: FeatureConfig, n_levels: int) -> None:
        super().__init__()
        by_name = {s.name: s for s in specs}
        unknown = [f for f in arch.fields if f not in by_name]
        if unknown:
            raise ValueError(f"architecture names unknown fields {unknown}")
        self.arch = arch
        self.field_names = list(arch.fields)
        self.encoders = nn.ModuleList(FieldEncoder(by_name[f], config) for f in self.field_names)
        d = sum(e.out_dim for e in self.encoders)
        layers: list[nn.Module] = []
        for w in arch.widths:
            layers += [nn.Linear(d, w), nn.ReLU()]
            d = w
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(d, n_levels)

    def logits(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = torch.cat([enc(t) for enc, t in zip(self.encoders, inputs, strict=True)], dim=-1)
        return self.head(self.mlp(x))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(*inputs), dim=-1)

    def inputs(self, batch: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        return [batch[f] for f in self.field_names]

    def batch_logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits from a ``{field: tensor}`` batch (the interface :func:`distill` and :func:`predict` use)."""
        return self.logits(*self.inputs(batch))


@dataclass(frozen=True)
class TrainConfig:
    """Distillation of a discrete student."""

    epochs: int = 12
    """Passes over the training pairs."""
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-5
    seed: int = 0


def to_tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def take(batch: Mapping[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[idx] for k, v in batch.items()}


def train_student(arch: Architecture, specs: Sequence[FieldSpec], config: FeatureConfig,
                  x: Mapping[str, torch.Tensor], teacher_probs: torch.Tensor, cfg: TrainConfig | None = None,
                  progress: bool = False) -> StudentNet:
    """A fresh :class:`StudentNet` distilled from ``teacher_probs`` (seeded: same inputs, same weights)."""
    cfg = cfg or TrainConfig()
    torch.manual_seed(cfg.seed)
    net = StudentNet(arch, specs, config, teacher_probs.shape[1])
    return distill(net, x, teacher_probs, cfg, f"distil {arch.describe()}", progress)


def distill(net: nn.Module, x: Mapping[str, torch.Tensor], teacher_probs: torch.Tensor, cfg: TrainConfig,
            desc: str = "distil", progress: bool = False) -> nn.Module:
    """Train any model with ``batch_logits({field: tensor})`` on the soft cross-entropy to the teacher: AdamW,
    one-cycle schedule, seeded batches. Every student (searched, hand-designed, two-tower) goes through it."""
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = teacher_probs.shape[0]
    steps = cfg.epochs * math.ceil(n / cfg.batch_size)
    # Warm-up over 10% of the steps, at least two (OneCycleLR divides by zero below that).
    pct = min(0.5, max(0.1, 2.0 / max(steps, 1)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 4), pct_start=pct)
    g = torch.Generator().manual_seed(cfg.seed)
    net.train()
    for _ in tqdm(range(cfg.epochs), desc=desc, disable=not progress):
        perm = torch.randperm(n, generator=g)
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            loss = distill_loss(net.batch_logits(take(x, idx)), teacher_probs[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.inference_mode()
def predict(net: nn.Module, x: Mapping[str, torch.Tensor], batch_size: int = 4096) -> np.ndarray:
    """Label probabilities ``(n, L)`` of a student (any model with ``batch_logits``)."""
    net.eval()
    n = next(iter(x.values())).shape[0]
    out = [torch.softmax(net.batch_logits({k: v[s : s + batch_size] for k, v in x.items()}), dim=-1)
           for s in range(0, n, batch_size)]
    return torch.cat(out).double().numpy() if out else np.zeros((0, 0))


def export_student(net: StudentNet, x: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> Path:
    """ONNX export: inputs named after the kept fields (dynamic batch), output ``probs``. Written atomically."""
    example = [t[:4] for t in net.inputs(x)]
    export_onnx(net.eval(), example, path, input_names=net.field_names, output_names=["probs"])
    return Path(path)


def measure_student_us(path: str | os.PathLike[str], x: Mapping[str, np.ndarray | torch.Tensor],
                       batch_size: int = 1024, threads: int = 1, repeats: int = 7) -> float:
    """Measured per-item latency (µs) of an exported student in ONNX Runtime at ``batch_size`` rows
    (rows of ``x`` are tiled up to the batch), threads pinned."""
    sess = ort_session(path, threads)
    names = [i.name for i in sess.get_inputs()]
    feeds = []
    for name in names:
        a = x[name].numpy() if isinstance(x[name], torch.Tensor) else np.asarray(x[name])
        reps = math.ceil(batch_size / a.shape[0])
        feeds.append(np.ascontiguousarray(np.concatenate([a] * reps)[:batch_size]))

    def run(inputs: Sequence[np.ndarray]) -> object:
        return sess.run(None, dict(zip(names, inputs, strict=True)))

    with torch_threads(threads):
        return time_per_item_us(run, feeds, batch_size, repeats=repeats)
