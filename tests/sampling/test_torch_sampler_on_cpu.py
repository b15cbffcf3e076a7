"""DifficultySampler inside real DataLoaders (torch and torchdata's StatefulDataLoader, verl's loader)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from taosr1_verl.sampling import DifficultyTracker, GroupRule, PolicyConfig, SelectionPolicy
from taosr1_verl.sampling.torch_sampler import DifficultySampler


class Rows(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"index": i, "x": torch.tensor([float(i)])}


def _sampler(n=64, seed=3, repeat=1, chunk=8):
    tracker = DifficultyTracker(n)
    levels = np.array([4, 3, 2, 1])[np.arange(n) % 4]
    policy = SelectionPolicy(tracker, GroupRule(), PolicyConfig(seed=seed, group_size=4), levels=levels)
    return DifficultySampler(policy, chunk_size=chunk, repeat=repeat), tracker


def test_plain_dataloader_epochs_and_feedback():
    sampler, tracker = _sampler()
    loader = DataLoader(Rows(64), batch_size=8, sampler=sampler)
    assert len(loader) == 8
    batches = [b["index"] for b in loader]
    assert sum(len(b) for b in batches) == 64
    # Feed back: half of every class is solved for good; the next epoch avoids those.
    solved = (np.arange(64) // 4) % 2 == 1
    tracker.update(np.flatnonzero(solved), 64, 64, step=1)
    tracker.update(np.flatnonzero(~solved), 2, 4, step=1)
    nxt = torch.cat([b["index"] for b in loader]).numpy()
    assert len(nxt) == 64
    assert np.mean(solved[nxt]) < 0.2


def test_repeat_for_grpo_groups():
    sampler, _ = _sampler(repeat=4)
    idx = list(sampler)[:16]
    assert all(len(set(idx[i : i + 4])) == 1 for i in range(0, 16, 4))


def test_stateful_dataloader_resume_is_identical():
    from torchdata.stateful_dataloader import StatefulDataLoader

    sampler, tracker = _sampler()
    loader = StatefulDataLoader(Rows(64), batch_size=4, sampler=sampler, drop_last=True)
    it = iter(loader)
    for step in range(5):
        b = next(it)["index"].numpy()
        tracker.update(b, step % 3, 2, step=step)
    state = loader.state_dict()
    # Through bytes with weights_only=True, as a checkpoint would be read back safely.
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    rest = [next(it)["index"].tolist() for _ in range(10)]

    sampler2, tracker2 = _sampler()
    loader2 = StatefulDataLoader(Rows(64), batch_size=4, sampler=sampler2, drop_last=True)
    loader2.load_state_dict(state)
    it2 = iter(loader2)
    assert [next(it2)["index"].tolist() for _ in range(10)] == rest
    assert np.array_equal(tracker2.succ, tracker.succ) and tracker2.step == tracker.step


def test_invalid_arguments():
    sampler, _ = _sampler()
    with pytest.raises(ValueError):
        DifficultySampler(sampler.policy, chunk_size=0)
