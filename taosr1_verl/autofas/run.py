"""The whole AutoFAS run on a teacher cache: split, features, latency table, search, retrain, export, report.

Resume (``taosr1_verl.run_manifest``): ``manifest.json``, written last, records the config, a content hash
of the teacher table and every output; a rerun that matches all of them does nothing. Otherwise two caches
in ``out_dir`` are reused when their own settings match: ``latency.json`` (the measured table) and
``search.json`` (the search result, keyed by the teacher table's hash too); the student and the random
baselines are retrained (seconds) and every other output is rebuilt in a staging directory and published
with the manifest last.

Outputs: ``student.onnx`` (inputs named after the kept fields, output ``probs``), ``features.json``
(what the serving side needs to build the inputs), ``report.json``/``report.md`` and three PNG plots.

Example:
    >>> cfg = AutoFASConfig(n_random=0)
    >>> cfg.latency_backend, cfg.batch_size, cfg.threads
    ('onnxruntime', 1024, 1)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from taosr1_verl.autofas.features import FeatureConfig, FeatureExtractor
from taosr1_verl.autofas.latency import EXTRACTION, ItemFeatureMode, LatencyTable, measure_latency_table
from taosr1_verl.autofas.report import agreement_metrics, plot_report, write_report
from taosr1_verl.autofas.runtime import torch_threads
from taosr1_verl.autofas.search import SearchConfig, SearchResult, random_architecture, run_search
from taosr1_verl.autofas.space import Architecture, SearchSpace
from taosr1_verl.autofas.student import (
    TrainConfig,
    export_student,
    measure_student_us,
    predict,
    to_tensors,
    train_student,
)
from taosr1_verl.autofas.teacher import TeacherTable
from taosr1_verl.data.pairs import Pair
from taosr1_verl.files import atomic_write_json
from taosr1_verl.run_manifest import OutputDir, RunSpec, make_output_dir, verify

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoFASConfig:
    """Everything one run needs."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    space: SearchSpace = field(default_factory=SearchSpace)
    search: SearchConfig = field(default_factory=SearchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    latency_backend: Literal["onnxruntime", "torch"] = "onnxruntime"
    """Runtime the latency table is measured with (the student ships as ONNX)."""
    batch_size: int = 1024
    """Items per scoring call at which latency is measured (pre-ranking scores thousands per request)."""
    threads: int = 1
    """Intra-op threads for every timing and for training."""
    test_fraction: float = 0.2
    """Share of queries held out for the report."""
    val_fraction: float = 0.25
    """Share of the training queries the architecture parameters are fitted on."""
    n_random: int = 3
    """Random architectures at equal latency to compare the searched student with."""
    k: int = 3
    """k of overlap@k / recall of the teacher's top-k."""
    count_extraction: bool = True
    """Count each field's extraction (timed on this machine) in its latency cost."""
    item_features: ItemFeatureMode = "precomputed"
    """How extraction is timed: item side precomputed per catalog (a pre-ranking index) or built per request."""
    measure_exported: bool = True
    """Export and time every model in ONNX Runtime (off: table latency only)."""

    def __post_init__(self) -> None:
        for name in ("test_fraction", "val_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"AutoFASConfig.{name} must be in (0, 1), got {getattr(self, name)}")


def query_key(p: Pair) -> str:
    return p.query_id or p.query


def split_by_query(pairs: Sequence[Pair], fraction: float, salt: str) -> tuple[list[int], list[int]]:
    """``(rest, held_out)`` row indices; a query's pairs all land on one side (CRC32 of the query key)."""
    rest, held = [], []
    for i, p in enumerate(pairs):
        h = zlib.crc32(f"{salt}\x1f{query_key(p)}".encode()) / 2**32
        (held if h < fraction else rest).append(i)
    if not rest or not held:
        raise ValueError(f"splitting {len(pairs)} pairs by query left one side empty; need more queries")
    return rest, held


OWNED = ("features.json", "student.onnx", "report.json", "report.md", "*.png")
"""Outputs a run publishes besides the two caches (``latency.json``, ``search.json``)."""


def teacher_fingerprint(table: TeacherTable) -> dict[str, Any]:
    """Content hash of a teacher table (pairs, probabilities, teacher name, schema): the run's input."""
    h = hashlib.sha256(f"{table.teacher}\x1f{table.schema.name}\x1f".encode())
    for p in table.pairs:
        h.update(json.dumps(p.to_record(), sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    h.update(np.ascontiguousarray(table.probs, dtype=np.float64).tobytes())
    return {"sha256": h.hexdigest(), "pairs": len(table.pairs), "teacher": table.teacher}


def latency_table(out: Path, cfg: AutoFASConfig, ex: FeatureExtractor, n_levels: int, progress: bool,
                  sample: Sequence[Pair], two_tower_dims: Sequence[int] = ()) -> LatencyTable:
    """``out/latency.json`` when it was measured on the same settings (machine-bound, teacher-free), else a
    fresh measurement saved there."""
    path = out / "latency.json"
    names = [s.name for s in ex.specs]
    extraction = f"{EXTRACTION}/{cfg.item_features}" if cfg.count_extraction else None
    if path.exists():
        t = LatencyTable.load(path)
        dims_ok = all(t.field_dims.get(s) == d for s, d in _field_dims(ex).items())
        if (t.backend == cfg.latency_backend and t.batch_size == cfg.batch_size and t.threads == cfg.threads
                and t.covers(names, cfg.space) and dims_ok and t.meta.get("extraction") == extraction
                and all(str(d) in t.two_tower_us for d in two_tower_dims)):
            logger.info("reusing latency table %s", path)
            return t
    t = measure_latency_table(ex.specs, cfg.features, cfg.space, n_levels, batch_size=cfg.batch_size,
                              threads=cfg.threads, backend=cfg.latency_backend, progress=progress,
                              extractor=ex if cfg.count_extraction else None, sample_pairs=sample,
                              item_features=cfg.item_features, two_tower_dims=two_tower_dims)
    t.save(path)
    return t


def _field_dims(ex: FeatureExtractor) -> dict[str, int]:
    return {s.name: (ex.config.embed_dim if s.kind == "bag" else s.size) for s in ex.specs}


def _evaluate(arch: Architecture, name: str, ex: FeatureExtractor, cfg: AutoFASConfig, table: LatencyTable,
              x_train: dict[str, torch.Tensor], t_train: torch.Tensor, x_test: dict[str, torch.Tensor],
              test: TeacherTable, out: Path, export_path: Path | None, progress: bool) -> dict[str, Any]:
    net = train_student(arch, ex.specs, cfg.features, x_train, t_train, cfg.train, progress=progress)
    probs = predict(net, x_test)
    metrics = agreement_metrics(probs, test.probs, test.schema.level_values, test.tiers,
                                [query_key(p) for p in test.pairs], [p.level for p in test.pairs], k=cfg.k)
    row: dict[str, Any] = {"name": name, "arch": arch.to_dict(), "table_us": table.discrete(arch, cfg.space),
                           "metrics": metrics}
    if cfg.measure_exported:
        path = export_path or out / f".{name}.onnx"
        export_student(net, x_test, path)
        row["measured_us"] = measure_student_us(path, {f: x_test[f] for f in arch.fields},
                                                batch_size=cfg.batch_size, threads=cfg.threads)
        if export_path is None:
            path.unlink(missing_ok=True)
    logger.info("%s %s: table %.3f us, %s", name, arch.describe(), row["table_us"],
                {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
    return row


def run_autofas(table: TeacherTable, out_dir: str | os.PathLike[str], cfg: AutoFASConfig | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Run every stage (see the module docstring) and return the report dict."""
    cfg = cfg or AutoFASConfig()
    out = make_output_dir(out_dir)
    teacher_fp = teacher_fingerprint(table)
    spec = RunSpec("autofas search", asdict(cfg), {"teacher_cache": teacher_fp})
    verdict = verify(out, spec)
    if verdict.complete:
        logger.info("%s is complete for this config and teacher table; nothing to do", out)
        return json.loads((out / "report.json").read_text(encoding="utf-8"))
    if verdict.manifest is not None:
        logger.info("%s: running again (%s)", out, verdict.reason)
    with OutputDir(out, spec, owned=OWNED) as od:
        report = _run(table, out, od, cfg, teacher_fp, progress)
        od.commit(keep=["latency.json", "search.json"])
    return report


def _run(table: TeacherTable, out: Path, od: OutputDir, cfg: AutoFASConfig, teacher_fp: dict[str, Any],
         progress: bool) -> dict[str, Any]:
    stage = od.staging
    with torch_threads(cfg.threads):
        train_rows, test_rows = split_by_query(table.pairs, cfg.test_fraction, "test")
        train, test = table.subset(train_rows), table.subset(test_rows)
        fit_rows, val_rows = split_by_query(train.pairs, cfg.val_fraction, "val")
        ex = FeatureExtractor(cfg.features).fit(train.pairs)
        atomic_write_json(stage / "features.json", ex.to_dict(), default=float)
        n_levels = len(table.schema)
        lat = latency_table(out, cfg, ex, n_levels, progress, train.pairs[:1024])

        x_train = to_tensors(ex.transform(train.pairs))
        t_train = torch.from_numpy(train.probs).float()
        x_test = to_tensors(ex.transform(test.pairs))
        fit_idx, val_idx = torch.tensor(fit_rows), torch.tensor(val_rows)

        search_path = out / "search.json"
        settings = {"search": asdict(cfg.search), "space": asdict(cfg.space), "features": asdict(cfg.features),
                    "teacher": table.teacher, "n_pairs": len(table.pairs), "teacher_sha256": teacher_fp["sha256"],
                    "latency": lat.meta.get("created")}
        result: SearchResult | None = None
        if search_path.exists():
            saved = json.loads(search_path.read_text())
            if saved.get("settings") == json.loads(json.dumps(settings, default=float)):
                result = SearchResult.from_dict(saved["result"])
                logger.info("reusing search result %s", search_path)
        if result is None:
            result = run_search(ex.specs, cfg.features, cfg.space, lat,
                                {k: v[fit_idx] for k, v in x_train.items()}, t_train[fit_idx],
                                {k: v[val_idx] for k, v in x_train.items()}, t_train[val_idx],
                                cfg.search, progress=progress)
            atomic_write_json(search_path, {"settings": settings, "result": result.to_dict()}, default=float)

        student = _evaluate(result.arch, "student", ex, cfg, lat, x_train, t_train, x_test, test, stage,
                            stage / "student.onnx", progress)
        rng = random.Random(cfg.search.seed)
        baselines = []
        for i in range(cfg.n_random):
            arch = random_architecture([s.name for s in ex.specs], cfg.space, lat, student["table_us"], rng)
            baselines.append(_evaluate(arch, f"random{i}", ex, cfg, lat, x_train, t_train, x_test, test, stage,
                                       None, progress))

    report: dict[str, Any] = {
        "teacher": table.teacher, "schema": table.schema.name, "n_train": len(train_rows), "n_test": len(test_rows),
        "latency_backend": lat.backend, "batch_size": lat.batch_size, "threads": lat.threads,
        "search": result.to_dict(), "student": student, "random_baselines": baselines,
        "kept_fields": list(result.arch.fields),
        "dropped_fields": [s.name for s in ex.specs if s.name not in result.arch.fields],
        "config": asdict(cfg),
    }
    if baselines:
        report["random_mean"] = {k: float(np.nanmean([b["metrics"][k] for b in baselines]))
                                 for k in ("kl", "auc_good", "overlap_at_k", "recall_k_in_m")}
    report["plots"] = plot_report(stage, report)
    write_report(stage, report)
    return report
