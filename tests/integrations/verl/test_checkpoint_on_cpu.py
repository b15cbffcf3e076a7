"""Locating verl FSDP checkpoints and the HF pass-through (the merge itself needs a real verl SFT
checkpoint; see docs/pairs.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taosr1_verl.integrations.verl.checkpoint import (
    ensure_hf_checkpoint,
    find_fsdp_checkpoint,
    is_hf_checkpoint,
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
