"""`taosr1 score` on a tiny offline model: JSONL from stdin, CSV from a file, and clear input errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from taosr1_verl.cli import main
from taosr1_verl.scoring.cumpt import cumpt_levels
from taosr1_verl.scoring.hf import HFScorer


def test_jsonl_stdin_matches_the_library(tiny_model, monkeypatch, capsys):
    items = [{"title": "red oak table", "attributes": {"colour": "red"}}, {"title": "wool rug"},
             {"title": "steel desk", "description": "a desk"}]
    lines = [json.dumps({"query": "red oak dining table", "items": items}),
             json.dumps({"query": "wool rug", "title": "grey wool rug"})]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["score", "--model", str(tiny_model), "--beta", "0.4"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o["where"] for o in out] == ["<stdin>:1: item 0", "<stdin>:1: item 1", "<stdin>:1: item 2", "<stdin>:2"]
    probs = np.array([[o["probs"][k] for k in ("4", "3", "2", "1")] for o in out])
    ref = HFScorer(tiny_model).score_items("red oak dining table", items)
    np.testing.assert_allclose(probs[:3], ref, atol=1e-5)
    assert [o["level"] for o in out] == cumpt_levels(probs, 0.4).tolist()
    assert {o["tier"] for o in out} <= {"Good", "Mid", "Bad"}


def test_csv_file_to_output_file(tiny_model, tmp_path):
    src = tmp_path / "pairs.csv"
    src.write_text('query,title,attributes\noak table,Oak desk,"{""colour"": ""red""}"\noak table,Pine bed,\n')
    dst = tmp_path / "scored.jsonl"
    assert main(["score", "--model", str(tiny_model), "--input", str(src), "--output", str(dst)]) == 0
    rows = [json.loads(x) for x in dst.read_text().splitlines()]
    assert [r["title"] for r in rows] == ["Oak desk", "Pine bed"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", "query,name\nq,t\n", "missing column(s) ['title']"),
        ("b.jsonl", '{"query": "q", "items": [{"title": "ok"}, {"title": " "}]}\n', "b.jsonl:1: item 1: field 'title' is empty"),
        ("c.jsonl", '{"query": "q", "title": "ok"}\n{"query": "q", "title": "' + "x" * 6000 + '"}\n',
         "c.jsonl:2: field 'title' has 6000 characters"),
        ("d.jsonl", '{"query": "q", "title": "ok"}\nnot json\n', "d.jsonl:2: not valid JSON"),
        ("e.tsv", "query\ttitle\n\tsofa\n", "e.tsv:2: field 'query' is empty"),
        ("f.jsonl", '{"query": "q", "items": []}\n', "f.jsonl:1: field 'items' must be a non-empty list"),
    ],
)
def test_bad_input_names_file_line_and_field(tiny_model, tmp_path, capsys, name, content, message):
    src = tmp_path / name
    src.write_text(content)
    assert main(["score", "--model", str(tiny_model), "--input", str(src)]) == 2
    assert message in capsys.readouterr().err

