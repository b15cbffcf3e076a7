"""Block-size choice of the vLLM backend (no engine: pure functions)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from taosr1_verl.scoring.vllm_backend import finest_block_size, reusable_prefix_tokens


@dataclass(frozen=True)
class _MultipleOf:  # the shape of vllm's MultipleOf(n)
    base: int


def test_finest_block_size_reads_ints_and_multiples():
    assert finest_block_size([_MultipleOf(32)]) == 32  # vLLM-CPU's attention kernels
    assert finest_block_size([64, _MultipleOf(16), 32]) == 16
    with pytest.raises(ValueError):
        finest_block_size([])


@pytest.mark.parametrize(("prefix", "block", "reused"), [
    (81, 32, 64), (81, 128, 0), (64, 32, 64), (31, 32, 0), (162, 32, 160), (0, 32, 0),
])
def test_reusable_prefix_tokens_counts_whole_blocks(prefix, block, reused):
    assert reusable_prefix_tokens(prefix, block) == reused


def test_reusable_prefix_tokens_rejects_bad_block():
    with pytest.raises(ValueError):
        reusable_prefix_tokens(81, 0)
