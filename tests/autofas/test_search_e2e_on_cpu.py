"""End to end through the CLI: teacher cache -> latency table -> search -> retrain -> ONNX -> report.

The teacher is the synthetic catalog's gold labels made soft (a stand-in for the TaoSR1 scorer that needs
no model); the latency table is measured on this machine. The searched student must beat random
architectures of equal table latency (within [0.6, 1] x its own) on agreement with the teacher.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from taosr1_verl.cli import main


@pytest.mark.slow
def test_autofas_search_beats_random_architectures_at_equal_latency(tmp_path) -> None:
    cache = tmp_path / "teacher.parquet"
    assert main(["autofas", "teacher", "--synthetic", "3000", "--seed", "0", "--out", str(cache)]) == 0
    out = tmp_path / "run"
    assert main(["autofas", "search", "--teacher-cache", str(cache), "--out", str(out), "--epochs", "10",
                 "--budget-fraction", "0.2", "--buckets", "4096", "--latency-backend", "torch",
                 "--n-random", "3", "--seed", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    for name in ("report.md", "student.onnx", "features.json", "latency.json", *report["plots"]):
        assert (out / name).exists(), name

    st, rand = report["student"], report["random_baselines"]
    assert st["table_us"] <= report["search"]["budget_us"] * (1 + 1e-9)
    assert len(rand) == 3
    assert all(r["table_us"] <= st["table_us"] * 1.05 for r in rand)
    mean_kl = np.mean([r["metrics"]["kl"] for r in rand])
    mean_auc = np.mean([r["metrics"]["auc_good"] for r in rand])
    assert st["metrics"]["kl"] < mean_kl
    assert st["metrics"]["auc_good"] > mean_auc
    assert st["metrics"]["auc_good"] > 0.75
    assert st["measured_us"] > 0

    # The exported student runs on its own from features.json and the raw pairs.
    import onnxruntime as ort

    from taosr1_verl.autofas.features import FeatureExtractor
    from taosr1_verl.autofas.teacher import load_teacher_cache

    table = load_teacher_cache(cache)
    ex = FeatureExtractor.from_dict(json.loads((out / "features.json").read_text()))
    sess = ort.InferenceSession(str(out / "student.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names == st["arch"]["fields"]
    feats = ex.transform(table.pairs[:200], fields=names)
    (probs,) = sess.run(None, {n: feats[n] for n in names})
    assert probs.shape == (200, 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
