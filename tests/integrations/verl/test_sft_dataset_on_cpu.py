"""The label-weighted SFT dataset: verl's real MultiTurnSFTDataset underneath, weights on the label token."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from taosr1_verl.integrations.verl.sft_dataset import LabelWeightedSFTDataset, weight_first_tokens
from taosr1_verl.prompts import PromptConfig, build_messages
from taosr1_verl.response import format_response
from taosr1_verl.schema import TAOSR1


@given(st.lists(st.integers(0, 1), max_size=60), st.floats(0.5, 100))
def test_weights_go_to_the_first_token_of_each_trained_run(mask, weight):
    lm = torch.tensor(mask, dtype=torch.long)
    out = weight_first_tokens(lm, weight)
    assert out.dtype == torch.float32 and out.shape == lm.shape
    starts = [i for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1])]
    for i, m in enumerate(mask):
        want = (weight if i in starts else 1.0) if m else 0.0
        assert out[i].item() == pytest.approx(want)


@pytest.fixture()
def sft_parquet(tmp_path, wands_queries):
    rows = []
    for i, q in enumerate(wands_queries[:6]):
        lv = TAOSR1.levels[i % 4]
        msgs = build_messages(q, f"{q} item {i}", {"colour": "red"}, config=PromptConfig(instructions="none"))
        rows.append({"messages": [*msgs, {"role": "assistant",
                                          "content": format_response(lv.label, f"query wants {q}")}]})
    path = tmp_path / "sft.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path, rows


def _config(**kw):
    return {"pad_mode": "no_padding", "max_length": 512, "truncation": "error", "messages_key": "messages", **kw}


def test_the_label_token_of_every_row_carries_the_weight(sft_parquet, tiny_tokenizer):
    path, rows = sft_parquet
    plain = LabelWeightedSFTDataset([str(path)], tiny_tokenizer, config=_config())
    weighted = LabelWeightedSFTDataset([str(path)], tiny_tokenizer, config=_config(label_weight=20.0))
    assert len(weighted) == len(rows)
    for i, row in enumerate(rows):
        a, b = plain[i], weighted[i]
        assert torch.equal(a["input_ids"], b["input_ids"])
        heavy = (b["loss_mask"] == 20.0).nonzero().flatten().tolist()
        assert len(heavy) == 1, b["loss_mask"]
        label = row["messages"][-1]["content"].splitlines()[0]
        assert tiny_tokenizer.decode(b["input_ids"][heavy]) == label
        # every other trained token keeps verl's weight 1; nothing outside the answer is trained
        rest = b["loss_mask"].clone()
        rest[heavy] = 1.0
        assert torch.equal(rest, a["loss_mask"].float())


def test_weights_need_the_no_padding_layout_and_a_positive_value(sft_parquet, tiny_tokenizer):
    path, _ = sft_parquet
    with pytest.raises(ValueError, match="pad_mode=no_padding"):
        LabelWeightedSFTDataset([str(path)], tiny_tokenizer, config=_config(pad_mode="right", label_weight=5))
    for bad in (0, -1):
        with pytest.raises(ValueError, match="must be a number > 0"):
            LabelWeightedSFTDataset([str(path)], tiny_tokenizer, config=_config(label_weight=bad))
    # weight 1 is verl's own loss, in either layout
    assert len(LabelWeightedSFTDataset([str(path)], tiny_tokenizer, config=_config(pad_mode="right"))) == 6
