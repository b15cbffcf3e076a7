"""``taosr1 autofas``: build the teacher cache, then search and distil the student.

    taosr1 autofas teacher --pairs pairs.parquet --out runs/af/teacher.parquet --teacher gold-soft
    taosr1 autofas teacher --pairs pairs.parquet --out runs/af/teacher.parquet --model runs/tiny
    taosr1 autofas search  --teacher-cache runs/af/teacher.parquet --out runs/af --budget-us 20
"""

from __future__ import annotations

import argparse
import json

from taosr1_verl.commands.args import (
    fraction,
    non_negative_int,
    output_dir,
    output_file,
    parquet_file,
    positive_float,
    positive_int,
    unit_float,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("autofas", help="AutoFAS: search and distil a pre-ranking student under a latency budget")
    s = p.add_subparsers(dest="autofas_command", metavar="STEP", required=True)

    t = s.add_parser("teacher", help="score pairs with the teacher once and cache the probabilities (parquet)")
    t.add_argument("--pairs", type=parquet_file, help="pairs parquet (taosr1_verl.data.builders.write_pairs_parquet layout)")
    t.add_argument("--synthetic", type=positive_int, metavar="N", help="instead of --pairs: N synthetic catalog pairs")
    t.add_argument("--seed", type=int, default=0, help="seed of --synthetic and of the gold-soft teacher")
    t.add_argument("--out", required=True, type=output_file, help="teacher cache parquet to write (resumed when it exists)")
    t.add_argument("--model", help="local HF checkpoint: first-token label probabilities (the real teacher)")
    t.add_argument("--teacher", default=None, help="teacher name stored in the cache (default: the model path, "
                   "or 'gold-soft' without --model: gold labels made soft, a stand-in needing no model)")
    t.add_argument("--schema", default="taosr1", help="label schema preset")
    t.add_argument("--beta", type=unit_float, default=0.5, help="CumPT threshold for the cached teacher tier")
    t.set_defaults(func=run_teacher)

    r = s.add_parser("search", help="search fields + architecture, retrain, export ONNX, write the report")
    r.add_argument("--teacher-cache", required=True, type=parquet_file, help="parquet from `taosr1 autofas teacher`")
    r.add_argument("--out", required=True, type=output_dir, help="output directory (resumable)")
    r.add_argument("--schema", default="taosr1", help="label schema preset of the cache")
    r.add_argument("--budget-us", type=positive_float, help="latency budget, µs per item at --batch-size")
    r.add_argument("--budget-fraction", type=fraction, default=0.25,
                   help="without --budget-us: this fraction of the largest architecture's latency")
    r.add_argument("--epochs", type=positive_int, default=12, help="search epochs (and student retraining epochs)")
    r.add_argument("--widths", default="16,32,64", help="candidate MLP widths")
    r.add_argument("--layers", type=positive_int, default=3, help="mixed operators")
    r.add_argument("--buckets", type=positive_int, default=1 << 14, help="hash buckets per bag field")
    r.add_argument("--latency-backend", default="onnxruntime", choices=["onnxruntime", "torch"])
    r.add_argument("--no-extraction-cost", action="store_true", help="model cost only in the latency table")
    r.add_argument("--batch-size", type=positive_int, default=1024, help="items per scoring call for latency")
    r.add_argument("--threads", type=positive_int, default=1, help="pinned intra-op threads")
    r.add_argument("--n-random", type=non_negative_int, default=3, help="random architectures at equal latency to compare")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--progress", action="store_true")
    r.set_defaults(func=run_search)


def run_teacher(args: argparse.Namespace) -> int:
    from taosr1_verl.autofas.teacher import build_teacher_cache, gold_soft_teacher, hf_teacher

    if bool(args.pairs) == bool(args.synthetic):
        raise ValueError("pass exactly one of --pairs or --synthetic")
    if args.synthetic:
        from taosr1_verl.data.synth import generate_synthetic

        pairs = generate_synthetic(args.synthetic, seed=args.seed)
    else:
        from taosr1_verl.data.builders import iter_pairs_parquet

        pairs = list(iter_pairs_parquet(args.pairs))
    if args.model:
        scorer, name = hf_teacher(args.model, args.schema), args.teacher or str(args.model)
    else:
        scorer, name = gold_soft_teacher(args.schema, seed=args.seed), args.teacher or "gold-soft"
    table = build_teacher_cache(pairs, args.out, scorer=scorer, schema=args.schema, beta=args.beta, teacher=name,
                                progress=True)
    tiers = table.tiers
    print(json.dumps({"pairs": len(table.pairs), "teacher": name, "out": args.out,
                      "tiers": {t: tiers.count(t) for t in sorted(set(tiers))}}))
    return 0


def run_search(args: argparse.Namespace) -> int:
    from taosr1_verl.autofas.features import FeatureConfig
    from taosr1_verl.autofas.run import AutoFASConfig, run_autofas
    from taosr1_verl.autofas.search import SearchConfig
    from taosr1_verl.autofas.space import SearchSpace
    from taosr1_verl.autofas.student import TrainConfig
    from taosr1_verl.autofas.teacher import load_teacher_cache

    try:
        widths = tuple(int(w) for w in args.widths.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise ValueError(f"--widths must be comma-separated positive ints, got {args.widths!r}")
    table = load_teacher_cache(args.teacher_cache, args.schema)
    cfg = AutoFASConfig(
        features=FeatureConfig(n_buckets=args.buckets),
        space=SearchSpace(widths=widths, n_layers=args.layers),
        search=SearchConfig(epochs=args.epochs, budget_us=args.budget_us, budget_fraction=args.budget_fraction,
                            seed=args.seed),
        train=TrainConfig(epochs=args.epochs, seed=args.seed),
        latency_backend=args.latency_backend, batch_size=args.batch_size, threads=args.threads,
        n_random=args.n_random, count_extraction=not args.no_extraction_cost,
    )
    report = run_autofas(table, args.out, cfg, progress=args.progress)
    st = report["student"]
    print(json.dumps({"arch": st["arch"], "table_us": st["table_us"], "measured_us": st.get("measured_us"),
                      "budget_us": report["search"]["budget_us"], "metrics": st["metrics"],
                      "random_mean": report.get("random_mean"), "report": f"{args.out}/report.md"}))
    return 0
