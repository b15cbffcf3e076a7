"""The frontier's pieces: budget fill after derivation, cascade recall, verdicts, the two-tower student and the
deployed scorers (ONNX + vectorised extraction = the torch model on the batch features), and the command end
to end (tiny settings) with its resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from taosr1_verl.autofas.features import FeatureConfig, FeatureExtractor
from taosr1_verl.autofas.frontier import cascade_recall, verdicts
from taosr1_verl.autofas.latency import LatencyTable
from taosr1_verl.autofas.search import fill
from taosr1_verl.autofas.serve import StudentScorer, TwoTowerScorer
from taosr1_verl.autofas.space import Architecture, SearchSpace
from taosr1_verl.autofas.student import TrainConfig, distill, predict, to_tensors, train_student
from taosr1_verl.autofas.teacher import build_teacher_cache, gold_soft_teacher
from taosr1_verl.autofas.twotower import TwoTower
from taosr1_verl.cli import main
from taosr1_verl.data.synth import generate_synthetic


def test_fill_adds_the_most_probable_fields_that_fit() -> None:
    space = SearchSpace(widths=(8,), n_layers=1)
    t = LatencyTable(batch_size=8, threads=1, backend="given", field_us={"a": 1.0, "b": 3.0, "c": 1.5, "d": 0.5},
                     field_dims={"a": 1, "b": 1, "c": 1, "d": 1}, first_us={"8": (0.0, 0.0)}, hidden_us={},
                     head_us={"8": 0.0}, base_us=0.0)
    probs = {"a": 0.9, "b": 0.45, "c": 0.4, "d": 0.01}
    arch, steps = fill(Architecture(("a",), (8,)), t, space, 3.2, probs)
    # b (3.0) does not fit beside a; c does, then d.
    assert arch.fields == ("a", "c", "d") and len(steps) == 2
    assert t.discrete(arch, space) <= 3.2
    same, none = fill(Architecture(("a",), (8,)), t, space, 1.2, probs)
    assert same.fields == ("a",) and not none


def test_cascade_recall_counts_good_items_in_the_student_top_k() -> None:
    qids = ["q"] * 6 + ["r"] * 4 + ["s"] * 3
    good = np.array([1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    scores = np.array([5, 0, 4, 3, 2, 1, 9, 1, 0, 0, 1, 2, 3], dtype=float)
    r = cascade_recall(scores, good, qids, k=2)
    # q: top 2 = rows 0, 2 -> 1 of 2 Good; r: top 2 = rows 6, 7 -> 1 of 1; s has no Good (skipped).
    assert r["queries"] == 2 and r["recall"] == pytest.approx((0.5 + 1.0) / 2)
    assert r["ceiling"] == 1.0 and r["random"] == pytest.approx((2 / 6 + 2 / 4) / 2)


def test_verdicts_compare_with_the_best_baseline_no_more_expensive() -> None:
    def row(method: str, label: str, us: float, aucs: list[float], budget: float | None = None) -> dict:
        return {"method": method, "label": label, "budget_us": budget,
                "table_us": {"median": us, "max": us}, "measured_us": {"median": float("nan")},
                "auc_good": {"mean": float(np.mean(aucs)), "min": min(aucs), "max": max(aucs)}}

    rows = [row("two-tower", "d=8", 0.3, [0.6, 0.61]), row("mlp", "w=16", 5.0, [0.99, 0.99]),
            row("random-best", "b1", 0.9, [0.80, 0.84], 1.0), row("autofas", "b1", 1.0, [0.90, 0.91], 1.0),
            row("autofas", "b5", 4.0, [0.95, 0.97], 5.0)]
    v = verdicts(rows, [1.0, 5.0])
    assert v[0]["best"] == "random-best b1" and v[0]["clear"] is True
    assert v[0]["margin"] == pytest.approx(0.905 - 0.82)
    # At the second budget the MLP (5.0 us) costs more than AutoFAS's 4.0: the best affordable rival is random.
    assert v[1]["best"] == "random-best b1" and v[1]["above"] is True


@pytest.fixture(scope="module")
def fitted() -> tuple[FeatureExtractor, list, dict[str, torch.Tensor], torch.Tensor]:
    pairs = generate_synthetic(400, seed=2)
    ex = FeatureExtractor(FeatureConfig(n_buckets=256, embed_dim=4)).fit(pairs)
    probs = torch.from_numpy(gold_soft_teacher("taosr1")(pairs)).float()
    return ex, pairs, to_tensors(ex.transform(pairs)), probs


def test_deployed_scorers_match_the_torch_models(fitted, tmp_path) -> None:
    ex, pairs, x, t = fitted
    cfg = TrainConfig(epochs=1)
    net = train_student(Architecture(("query_x_category", "text_match", "title_ngrams"), (8,)), ex.specs,
                        ex.config, x, t, cfg)
    torch.manual_seed(0)
    tt = distill(TwoTower(ex.specs, ex.config, dim=4, n_levels=4, hidden=8), x, t, cfg)
    want_mlp, want_tt = predict(net, x), predict(tt, x)
    mlp = StudentScorer.from_net(ex, net, tmp_path).index(pairs)
    two = TwoTowerScorer(ex, tt, tmp_path).index(pairs)
    for qid in sorted({p.query_id for p in pairs})[:5]:
        rows = np.array([i for i, p in enumerate(pairs) if p.query_id == qid])
        query = pairs[rows[0]].query
        np.testing.assert_allclose(mlp.score(query, rows), want_mlp[rows], atol=1e-5)
        np.testing.assert_allclose(mlp.score_pairs(query, [pairs[i] for i in rows]), want_mlp[rows], atol=1e-5)
        np.testing.assert_allclose(two.score(query, rows), want_tt[rows], atol=1e-5)


@pytest.mark.slow
def test_frontier_command_end_to_end_and_resume(tmp_path, caplog) -> None:
    """About a minute: 21 students trained, exported and timed (slow for the time, not for an engine)."""
    train, cascade = tmp_path / "t.parquet", tmp_path / "c.parquet"
    build_teacher_cache(generate_synthetic(480, seed=0), train, scorer=gold_soft_teacher("taosr1"), teacher="g")
    assert main(["autofas", "teacher", "--synthetic", "240", "--items-per-query", "60", "--mix", "10/0/30/60",
                 "--seed", "5", "--out", str(cascade)]) == 0
    out = tmp_path / "front"
    args = ["autofas", "frontier", "--teacher-cache", str(train), "--cascade-cache", str(cascade), "--out", str(out),
            "--epochs", "1", "--widths", "8,16", "--layers", "2", "--buckets", "256", "--latency-backend", "torch",
            "--batch-size", "64", "--n-budgets", "2", "--seeds", "0,1", "--n-random", "2", "--two-tower-dims", "4",
            "--cascade-k", "5,20", "--teacher-us", "1000"]
    assert main(args) == 0
    report = json.loads((out / "frontier.json").read_text())
    assert {"frontier.md", "frontier.png", "cascade.png", "latency.json", "points.jsonl"} <= {p.name for p in out.iterdir()}
    methods = {(r["method"], r["label"]): r for r in report["rows"]}
    assert {m for m, _ in methods} == {"two-tower", "mlp", "random-best", "autofas"}
    assert all(r["auc_good"]["n"] == 2 and r["measured_us"]["n"] == 2 for r in report["rows"])
    assert len(report["verdicts"]) == len(report["budgets_us"]) == 2
    assert report["budgets_us"][0] == pytest.approx(min(json.loads((out / "latency.json").read_text())
                                                        ["two_tower_us"].values()))
    for r in report["rows"]:
        for k in ("5", "20"):
            c = r["cascade"][k]
            assert 0.0 <= c["recall"]["min"] <= c["ceiling"] + 1e-9 and c["candidates"] == 60
    assert "| autofas |" in (out / "frontier.md").read_text() and "ms/query@5" in (out / "frontier.md").read_text()
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(args) == 0
    assert "nothing to do" in caplog.text
    # More seeds: the points of seeds 0 and 1 are reused, only seed 2's are trained.
    n_lines = len((out / "points.jsonl").read_text().splitlines())
    assert main([*args[:-10], "--seeds", "0,1,2", *args[-8:]]) == 0
    added = len((out / "points.jsonl").read_text().splitlines()) - n_lines
    assert added == n_lines // 2
