"""AutoFAS run resume: a rerun with the same config and teacher table does nothing; another teacher table
(same teacher name and size, other probabilities) never reuses the cached search result."""

from __future__ import annotations

import json

from taosr1_verl.autofas.features import FeatureConfig
from taosr1_verl.autofas.run import AutoFASConfig, run_autofas
from taosr1_verl.autofas.search import SearchConfig
from taosr1_verl.autofas.space import SearchSpace
from taosr1_verl.autofas.student import TrainConfig
from taosr1_verl.autofas.teacher import build_teacher_cache, gold_soft_teacher
from taosr1_verl.data.synth import generate_synthetic
from taosr1_verl.run_manifest import MANIFEST

SMALL = AutoFASConfig(features=FeatureConfig(n_buckets=256), space=SearchSpace(widths=(8,), n_layers=1),
                      search=SearchConfig(epochs=1, warmup_epochs=0), train=TrainConfig(epochs=1),
                      latency_backend="torch", batch_size=64, n_random=0, count_extraction=False,
                      measure_exported=False)


def test_rerun_is_a_no_op_and_another_teacher_table_is_searched_again(tmp_path, caplog) -> None:
    pairs = generate_synthetic(300, seed=0)
    tables = [build_teacher_cache(pairs, tmp_path / f"t{s}.parquet", scorer=gold_soft_teacher("taosr1", seed=s),
                                  teacher="gold-soft") for s in (0, 1)]
    out = tmp_path / "run"
    first = run_autofas(tables[0], out, SMALL)
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"features.json", "latency.json", "search.json", "report.json", "report.md", MANIFEST} <= set(files)
    with caplog.at_level("INFO"):
        assert run_autofas(tables[0], out, SMALL) == json.loads(json.dumps(first, default=float))
    assert "nothing to do" in caplog.text
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files
    caplog.clear()
    with caplog.at_level("INFO"):
        run_autofas(tables[1], out, SMALL)
    assert "teacher_cache changed" in caplog.text and "reusing search result" not in caplog.text
    assert "reusing latency table" in caplog.text  # the machine-bound cache does not depend on the teacher
    assert json.loads((out / MANIFEST).read_text())["inputs"]["teacher_cache"]["sha256"] != \
        json.loads(files[MANIFEST])["inputs"]["teacher_cache"]["sha256"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
