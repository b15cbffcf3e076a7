"""``taosr1 autofas``: build the teacher cache, then search and distil the student.

    taosr1 autofas teacher --pairs pairs.parquet --out runs/af/teacher.parquet --teacher gold-soft
    taosr1 autofas teacher --pairs pairs.parquet --out runs/af/teacher.parquet --model runs/tiny
    taosr1 autofas search  --teacher-cache runs/af/teacher.parquet --out runs/af --budget-us 20
    taosr1 autofas frontier --teacher-cache runs/af/teacher.parquet --cascade-cache runs/af/cascade.parquet \
        --teacher-model runs/tiny --out runs/af/frontier
"""

from __future__ import annotations

import argparse
import json

from taosr1_verl.commands.args import (
    add_instructions_arg,
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
    t.add_argument("--items-per-query", type=positive_int, default=8,
                   help="--synthetic: candidates per query (a cascade set: e.g. 500)")
    t.add_argument("--mix", default="50/5/36/9", help="--synthetic: label mix of levels 4/3/2/1")
    t.add_argument("--out", required=True, type=output_file, help="teacher cache parquet to write (resumed when it exists)")
    t.add_argument("--model", help="local HF checkpoint: first-token label probabilities (the real teacher)")
    t.add_argument("--teacher", default=None, help="teacher name stored in the cache (default: the model path, "
                   "or 'gold-soft' without --model: gold labels made soft, a stand-in needing no model)")
    t.add_argument("--schema", default="taosr1", help="label schema preset")
    t.add_argument("--beta", type=unit_float, default=0.5, help="CumPT threshold for the cached teacher tier")
    add_instructions_arg(t)
    t.set_defaults(func=run_teacher)

    r = s.add_parser("search", help="search fields + architecture, retrain, export ONNX, write the report")
    _common(r)
    r.add_argument("--budget-us", type=positive_float, help="latency budget, µs per item at --batch-size")
    r.add_argument("--budget-fraction", type=fraction, default=0.25,
                   help="without --budget-us: this fraction of the largest architecture's latency")
    r.add_argument("--n-random", type=non_negative_int, default=3, help="random architectures at equal latency to compare")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=run_search)

    f = s.add_parser("frontier", help="AutoFAS vs two-tower, hand-designed MLP and random architectures at several "
                     "budgets and seeds: frontier plot + table, and the cascade")
    _common(f)
    f.add_argument("--cascade-cache", type=parquet_file,
                   help="teacher cache of queries with many candidates each (`autofas teacher --items-per-query 500`)")
    f.add_argument("--teacher-model", help="local teacher checkpoint, to time its first-token scoring for the cascade")
    f.add_argument("--teacher-us", type=positive_float, help="instead of --teacher-model: its cost, µs per item")
    add_instructions_arg(f)
    f.add_argument("--budgets-us", default="", help="comma-separated budgets, µs/item (default: --n-budgets from "
                   "the two-tower's cost up to the largest student's)")
    f.add_argument("--n-budgets", type=positive_int, default=5)
    f.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    f.add_argument("--n-random", type=positive_int, default=5, help="random architectures per budget and seed (the best "
                   "on validation is the baseline)")
    f.add_argument("--two-tower-dims", default="8,32", help="two-tower vector sizes")
    f.add_argument("--cascade-k", default="50,100", help="candidates the student passes to the teacher")
    f.add_argument("--no-measure", action="store_true", help="table latency only (no export, no request timing)")
    f.set_defaults(func=run_frontier)


def _common(r: argparse.ArgumentParser) -> None:
    r.add_argument("--teacher-cache", required=True, type=parquet_file, help="parquet from `taosr1 autofas teacher`")
    r.add_argument("--out", required=True, type=output_dir, help="output directory (resumable)")
    r.add_argument("--schema", default="taosr1", help="label schema preset of the cache")
    r.add_argument("--epochs", type=positive_int, default=12, help="search epochs (and student retraining epochs)")
    r.add_argument("--widths", default="16,32,64", help="candidate MLP widths")
    r.add_argument("--layers", type=positive_int, default=3, help="mixed operators")
    r.add_argument("--buckets", type=positive_int, default=1 << 14, help="hash buckets per bag field")
    r.add_argument("--latency-backend", default="onnxruntime", choices=["onnxruntime", "torch"])
    r.add_argument("--no-extraction-cost", action="store_true", help="model cost only in the latency table")
    r.add_argument("--item-features", default="precomputed", choices=["precomputed", "per_request"],
                   help="extraction cost with the item side precomputed per catalog (an index) or built per request")
    r.add_argument("--batch-size", type=positive_int, default=1024, help="candidates per request for latency")
    r.add_argument("--threads", type=positive_int, default=1, help="pinned intra-op threads")
    r.add_argument("--progress", action="store_true")


def _ints(text: str, option: str, minimum: int = 1) -> tuple[int, ...]:
    try:
        vals = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        vals = ()
    if not vals or min(vals) < minimum:
        raise ValueError(f"{option} must be comma-separated ints >= {minimum}, got {text!r}")
    return vals


def _config(args: argparse.Namespace, seed: int, n_random: int, budget_us: float | None = None,
            budget_fraction: float = 0.25, measure_exported: bool = True):
    from taosr1_verl.autofas.features import FeatureConfig
    from taosr1_verl.autofas.run import AutoFASConfig
    from taosr1_verl.autofas.search import SearchConfig
    from taosr1_verl.autofas.space import SearchSpace
    from taosr1_verl.autofas.student import TrainConfig

    return AutoFASConfig(
        features=FeatureConfig(n_buckets=args.buckets),
        space=SearchSpace(widths=_ints(args.widths, "--widths"), n_layers=args.layers),
        search=SearchConfig(epochs=args.epochs, budget_us=budget_us, budget_fraction=budget_fraction, seed=seed),
        train=TrainConfig(epochs=args.epochs, seed=seed),
        latency_backend=args.latency_backend, batch_size=args.batch_size, threads=args.threads,
        n_random=n_random, count_extraction=not args.no_extraction_cost, item_features=args.item_features,
        measure_exported=measure_exported,
    )


def run_teacher(args: argparse.Namespace) -> int:
    from taosr1_verl.autofas.teacher import build_teacher_cache, gold_soft_teacher, hf_teacher

    if bool(args.pairs) == bool(args.synthetic):
        raise ValueError("pass exactly one of --pairs or --synthetic")
    if args.synthetic:
        from taosr1_verl.data.synth import generate_synthetic, parse_mix

        pairs = generate_synthetic(args.synthetic, seed=args.seed, items_per_query=args.items_per_query,
                                   label_mix=parse_mix(args.mix))
    else:
        from taosr1_verl.data.builders import iter_pairs_parquet

        pairs = list(iter_pairs_parquet(args.pairs))
    if args.model:
        from taosr1_verl.prompts import PromptConfig

        scorer = hf_teacher(args.model, args.schema, prompt_config=PromptConfig(instructions=args.instructions))
        name = args.teacher or str(args.model)
    else:
        scorer, name = gold_soft_teacher(args.schema, seed=args.seed), args.teacher or "gold-soft"
    table = build_teacher_cache(pairs, args.out, scorer=scorer, schema=args.schema, beta=args.beta, teacher=name,
                                progress=True)
    tiers = table.tiers
    print(json.dumps({"pairs": len(table.pairs), "teacher": name, "out": args.out,
                      "tiers": {t: tiers.count(t) for t in sorted(set(tiers))}}))
    return 0


def run_search(args: argparse.Namespace) -> int:
    from taosr1_verl.autofas.run import run_autofas
    from taosr1_verl.autofas.teacher import load_teacher_cache

    cfg = _config(args, args.seed, args.n_random, args.budget_us, args.budget_fraction)
    table = load_teacher_cache(args.teacher_cache, args.schema)
    report = run_autofas(table, args.out, cfg, progress=args.progress)
    st = report["student"]
    print(json.dumps({"arch": st["arch"], "table_us": st["table_us"], "measured_us": st.get("measured_us"),
                      "budget_us": report["search"]["budget_us"], "metrics": st["metrics"],
                      "random_mean": report.get("random_mean"), "report": f"{args.out}/report.md"}))
    return 0


def run_frontier(args: argparse.Namespace) -> int:
    from taosr1_verl.autofas.frontier import FrontierConfig, measure_teacher_us, run_frontier
    from taosr1_verl.autofas.teacher import load_teacher_cache

    try:
        budgets = tuple(float(b) for b in args.budgets_us.split(",") if b.strip())
    except ValueError:
        raise ValueError(f"--budgets-us must be comma-separated numbers, got {args.budgets_us!r}") from None
    if args.teacher_model and args.teacher_us:
        raise ValueError("pass at most one of --teacher-model and --teacher-us")
    seeds = _ints(args.seeds, "--seeds", minimum=0)
    cfg = FrontierConfig(base=_config(args, seeds[0], 0, measure_exported=False), budgets_us=budgets,
                         n_budgets=args.n_budgets, seeds=seeds, n_random=args.n_random,
                         two_tower_dims=_ints(args.two_tower_dims, "--two-tower-dims"),
                         cascade_k=_ints(args.cascade_k, "--cascade-k"), measure=not args.no_measure)
    table = load_teacher_cache(args.teacher_cache, args.schema)
    cascade = load_teacher_cache(args.cascade_cache, args.schema) if args.cascade_cache else None
    teacher_us = args.teacher_us
    if args.teacher_model:
        teacher_us = measure_teacher_us(args.teacher_model, (cascade or table).pairs, args.schema,
                                        args.instructions, threads=args.threads)
    note = f"teacher timing: {args.teacher_model}" if args.teacher_model else ""
    report = run_frontier(table, args.out, cfg, cascade=cascade, teacher_us=teacher_us, teacher_note=note,
                          progress=args.progress)
    print(json.dumps({"verdicts": report["verdicts"], "teacher_us": teacher_us,
                      "report": f"{args.out}/frontier.md", "plots": report["plots"]}, default=float))
    return 0
