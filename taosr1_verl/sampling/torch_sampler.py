"""The selection policy as a ``torch.utils.data.Sampler``, for any DataLoader.

Works with plain PyTorch, torchdata's ``StatefulDataLoader`` (verl's loader: it saves the sampler's
``state_dict`` with the loader's), TRL/transformers trainers (override ``Trainer._get_train_sampler``), and
verl's legacy trainer. Indices are chosen lazily, ``chunk_size`` at a time, so each chunk uses the newest
difficulty beliefs fed back by the trainer.

The state dict holds the policy's stream positions and RNG, the chunk being served and (by default) the
tracker's arrays as torch tensors, so ``torch.load(..., weights_only=True)`` reads it back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from taosr1_verl.sampling.policy import SelectionPolicy


def _to_torch(state: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            # torch has no uint16 arithmetic everywhere; int32 holds every uint16 value exactly.
            out[k] = torch.from_numpy(v.astype(np.int32) if v.dtype == np.uint16 else v.copy())
        else:
            out[k] = v
    return out


def _to_numpy(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


class DifficultySampler(Sampler[int]):
    """Yields dataset positions chosen by a :class:`SelectionPolicy`.

    Args:
        policy: the selection policy (holds the tracker the trainer updates).
        num_samples: indices per epoch (``len(sampler)``); default: dataset size.
        chunk_size: positions selected at once; use the trainer's prompt batch size.
        repeat: yield each position this many times in a row (TRL's GRPO wants ``num_generations``).
        include_tracker: put the tracker's arrays into :meth:`state_dict` (turn off when the tracker is
            checkpointed elsewhere).

    Example:
        >>> from taosr1_verl.sampling import DifficultyTracker, SelectionPolicy
        >>> s = DifficultySampler(SelectionPolicy(DifficultyTracker(), size=10), chunk_size=4)
        >>> len(list(s)), len(s)
        (10, 10)
    """

    def __init__(
        self,
        policy: SelectionPolicy,
        num_samples: int | None = None,
        chunk_size: int = 64,
        repeat: int = 1,
        include_tracker: bool = True,
    ) -> None:
        if chunk_size < 1 or repeat < 1:
            raise ValueError("DifficultySampler: chunk_size and repeat must be >= 1")
        self.policy = policy
        self.num_samples = int(num_samples if num_samples is not None else len(policy) * repeat)
        if self.num_samples < 1:
            raise ValueError("DifficultySampler: num_samples must be >= 1")
        self.chunk_size = int(chunk_size)
        self.repeat = int(repeat)
        self.include_tracker = include_tracker
        self._chunk = np.zeros(0, dtype=np.int64)
        self._pos = 0
        self._yielded = 0
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        # The sampler itself holds the position, so a loader restored mid-epoch resumes where it was.
        if self._yielded >= self.num_samples:
            self._yielded = 0
            self.epoch += 1
        while self._yielded < self.num_samples:
            if self._pos >= self._chunk.size:
                picked = self.policy.select(self.chunk_size)
                self._chunk = np.repeat(picked, self.repeat)
                self._pos = 0
            idx = int(self._chunk[self._pos])
            self._pos += 1
            self._yielded += 1
            yield idx

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "chunk": torch.from_numpy(self._chunk.copy()),
            "pos": self._pos,
            "yielded": self._yielded,
            "epoch": self.epoch,
            "policy": self.policy.state_dict(),
        }
        if self.include_tracker:
            state["tracker"] = _to_torch(self.policy.tracker.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        chunk = state["chunk"]
        self._chunk = (chunk.numpy() if isinstance(chunk, torch.Tensor) else np.asarray(chunk)).astype(np.int64)
        self._pos = int(state["pos"])
        self._yielded = int(state["yielded"])
        self.epoch = int(state["epoch"])
        self.policy.load_state_dict(state["policy"])
        if "tracker" in state:
            self.policy.tracker.load_state_dict(_to_numpy(state["tracker"]))
