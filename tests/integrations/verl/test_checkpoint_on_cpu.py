"""Locating verl FSDP checkpoints and the HF pass-through (the merge itself needs a real verl SFT
checkpoint; see docs/pairs.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taosr1_verl.errors import UserError
from taosr1_verl.integrations.verl.checkpoint import (
    ensure_hf_checkpoint,
    find_fsdp_checkpoint,
    is_hf_checkpoint,
    merge_fsdp_checkpoint,
)


def test_latest_global_step_and_actor_folder_are_found(tmp_path: Path) -> None:
    for step in (2, 10):
        d = tmp_path / f"global_step_{step}" / "actor"
        d.mkdir(parents=True)
        (d / "model_world_size_1_rank_0.pt").write_bytes(b"")
    assert find_fsdp_checkpoint(tmp_path) == tmp_path / "global_step_10" / "actor"
    assert find_fsdp_checkpoint(tmp_path / "global_step_2") == tmp_path / "global_step_2" / "actor"
    assert find_fsdp_checkpoint(tmp_path / "missing") is None


def test_hf_directory_passes_through_and_junk_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert is_hf_checkpoint(tmp_path) and ensure_hf_checkpoint(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="neither a Hugging Face model directory nor a verl FSDP checkpoint"):
        ensure_hf_checkpoint(tmp_path / "nothing")


class _Trap:
    """Unpickling this writes a file: the sign that someone ran torch.load(weights_only=False) on it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def test_shards_are_never_unpickled_silently(tmp_path: Path) -> None:
    """Without a safetensors export, converting a verl checkpoint means unpickling its shards: refused (naming
    the files and the alternative) unless allowed; with the export, the shards are never read."""
    import pickle

    ckpt = tmp_path / "global_step_3" / "actor"
    ckpt.mkdir(parents=True)
    marker = tmp_path / "ran"
    (ckpt / "model_world_size_1_rank_0.pt").write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(UserError, match=r"model_world_size_1_rank_0\.pt .*weights_only=False.*hf_model"):
        merge_fsdp_checkpoint(tmp_path, tmp_path / "hf")
    with pytest.raises(UserError, match="allow_pickle"):
        ensure_hf_checkpoint(tmp_path)
    export = ckpt / "huggingface"
    export.mkdir()
    (export / "config.json").write_text("{}")
    (export / "model.safetensors").write_bytes(b"weights")
    out = merge_fsdp_checkpoint(tmp_path, tmp_path / "hf")
    assert (out / "model.safetensors").read_bytes() == b"weights"
    with pytest.raises(UserError, match="prefer_export=False"):
        merge_fsdp_checkpoint(tmp_path, tmp_path / "hf2", prefer_export=False)
    assert not marker.exists() and not (tmp_path / "hf2").exists()
