"""``taosr1 data``: synthetic catalog, real-data preparation, SFT from a teacher file, stats, vLLM teacher.

    taosr1 data synth   --out data/syn --n 20000 --seed 0 --mix 50/5/36/9 --compact
    taosr1 data prepare --out data/wands --wands path/to/WANDS/dataset --on-error skip
    taosr1 data prepare --out data/esci --esci path/to/esci-data/shopping_queries_dataset --locale us
    taosr1 data prepare --out data/mine --input judgments.tsv --columns query=q,title=name,label=grade
    taosr1 data sft     --pairs data/mine/pairs_train.parquet --teacher teacher.jsonl --out sft.parquet
    taosr1 data stats   data/syn/rl_train.parquet --tokenizer models/tiny
    taosr1 data teach   --pairs data/mine/pairs_train.parquet --model MODEL_DIR --out teacher.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys

from taosr1_verl.commands.args import add_format_arg, add_instructions_arg, non_negative_float, positive_int


def _common_build(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--splits", default="train=0.8,val=0.1,test=0.1", help="query-level split shares")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and of class balancing")
    p.add_argument("--no-balance", action="store_true", help="keep the RL train set's label mix (default: balance)")
    p.add_argument("--per-class", type=positive_int, help="cap rows per class in the balanced RL set")
    add_instructions_arg(p)
    add_format_arg(p)
    p.add_argument("--tokenizer", help="a local tokenizer directory: report prompt lengths in tokens")
    p.add_argument("--no-resume", action="store_true",
                   help="rebuild even if the output is complete (a rerun otherwise checks options, inputs and "
                        "outputs against manifest.json and rebuilds only when something differs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build SFT/RL/eval datasets from raw judgments or the synthetic catalog")
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    p = dsub.add_parser("synth", help="generate the synthetic catalog (rule KB labels, rule teacher) and build datasets")
    _common_build(p)
    p.add_argument("--n", type=positive_int, default=20_000, help="number of (query, item) pairs")
    p.add_argument("--mix", default="50/5/36/9", help="label mix of levels 4/3/2/1 (paper: 50/5/36/9)")
    p.add_argument("--items-per-query", type=positive_int, default=8, help="items per query")
    p.add_argument("--describe", action="store_true", help="add a one-sentence item description")
    p.add_argument("--rules", help="a rule KB YAML (default: the packaged rules.yaml)")
    p.set_defaults(func=run_synth, resumable=True)

    p = dsub.add_parser("prepare", help="read real judgments (generic file, ESCI or WANDS) and build datasets")
    _common_build(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="a CSV/TSV/JSONL/parquet judgment file (see --columns)")
    src.add_argument("--esci", help="directory with shopping_queries_dataset_{examples,products}.parquet")
    src.add_argument("--wands", help="directory with WANDS query.csv, product.csv, label.csv")
    p.add_argument("--columns", default="", help="column map for --input, e.g. query=q,title=name,label=grade,"
                   "attribute_columns=brand+color,description=desc,query_id=qid,item_id=pid")
    p.add_argument("--input-format", choices=["csv", "tsv", "jsonl", "parquet"], help="format of --input")
    p.add_argument("--schema", help="label schema (default: esci for --esci, wands for --wands, else taosr1)")
    p.add_argument("--locale", help="ESCI: keep one product locale (us, es, jp)")
    p.add_argument("--on-error", default="raise", choices=["raise", "skip"],
                   help="bad rows: stop (raise) or drop and report them in dropped.jsonl (skip)")
    p.add_argument("--data-source", help="data_source column (default: esci, wands or the file stem)")
    p.add_argument("--teacher", help="teacher JSONL ({pair_id, response} per line): also build SFT files")
    p.set_defaults(func=run_prepare, resumable=True)

    p = dsub.add_parser("sft", help="build an SFT parquet from a pairs parquet and a teacher JSONL")
    p.add_argument("--pairs", required=True, help="a pairs_<split>.parquet from synth/prepare")
    p.add_argument("--teacher", required=True, help="teacher JSONL ({pair_id, response} per line)")
    p.add_argument("--out", required=True, help="output parquet")
    p.add_argument("--schema", default="taosr1", help="label schema of the pairs")
    p.add_argument("--data-source", default="taosr1", help="data_source column")
    add_instructions_arg(p)
    p.add_argument("--problems", help="write missing/invalid teacher answers here (JSONL)")
    p.set_defaults(func=run_sft)

    p = dsub.add_parser("stats", help="label mix, class CV and prompt lengths of dataset parquet files")
    p.add_argument("files", nargs="+", help="RL, eval, SFT or pairs parquet files")
    p.add_argument("--tokenizer", help="a local tokenizer directory: prompt lengths in tokens")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_stats)

    p = dsub.add_parser("teach", help="write a teacher JSONL with a local model on vLLM, prompted with retrieved rules")
    p.add_argument("--pairs", required=True, help="a pairs parquet")
    p.add_argument("--model", required=True, help="a local model directory (the teacher)")
    p.add_argument("--out", required=True, help="output teacher JSONL (resumable under the same model, pairs and "
                   "options: done pair ids are skipped; <out>.manifest.json records them)")
    p.add_argument("--rules", help="rule KB YAML to retrieve from (default: packaged rules.yaml)")
    p.add_argument("--top-k", type=positive_int, default=3, help="rules retrieved per pair")
    p.add_argument("--limit", type=positive_int, help="only the first N pairs")
    p.add_argument("--max-tokens", type=positive_int, default=256, help="max new tokens per answer")
    p.add_argument("--temperature", type=non_negative_float, default=0.0, help="sampling temperature")
    p.add_argument("--batch-size", type=positive_int, default=64, help="pairs per vLLM call (one checkpoint each)")
    p.add_argument("--no-resume", action="store_true", help="discard an existing --out and start over")
    p.set_defaults(func=run_teach, resumable=True)


def _build_config(args: argparse.Namespace, data_source: str, schema: str):
    from taosr1_verl.data.builders import BuildConfig
    from taosr1_verl.prompts import PromptConfig

    return BuildConfig(data_source=data_source, schema=schema, fmt=args.format,
                       prompt=PromptConfig(instructions=args.instructions))


def _tokenizer(path: str | None):
    if not path:
        return None
    from taosr1_verl.models.load import load_tokenizer

    return load_tokenizer(path)


def _summary(manifest: dict) -> None:
    print(json.dumps({"input": manifest["input"], "pairs_per_split": manifest["pairs_per_split"]}))
    for name, info in manifest["files"].items():
        print(f"{name}: {info['n_out']} rows (of {info['n_in']}), class CV {info['cv_in']:.3f} -> "
              f"{info['cv_out']:.3f}, dropped {info['dropped'] or 0}")


def _packaged_rules() -> str:
    from importlib import resources

    return str(resources.files("taosr1_verl.data.synth").joinpath("rules.yaml"))


def run_synth(args: argparse.Namespace) -> int:
    from taosr1_verl.data.prepare import prepare_dataset
    from taosr1_verl.data.split import parse_splits
    from taosr1_verl.data.synth import SynthConfig, iter_synthetic, load_rules, parse_mix, rule_teacher

    kb = load_rules(args.rules)
    cfg = SynthConfig(n_pairs=args.n, seed=args.seed, label_mix=parse_mix(args.mix),
                      items_per_query=args.items_per_query, describe=args.describe, rules_path=args.rules)
    options = {"source": "synthetic", "n": args.n, "mix": args.mix, "items_per_query": args.items_per_query,
               "describe": args.describe, "rules": args.rules}
    manifest = prepare_dataset(
        iter_synthetic(cfg, kb=kb), args.out, splits=parse_splits(args.splits), seed=args.seed,
        balance_rl=not args.no_balance, per_class=args.per_class,
        config=_build_config(args, "taosr1_synthetic", "taosr1"), teacher=lambda p: rule_teacher(p, kb),
        options=options, resume=not args.no_resume, progress=not args.no_progress,
        tokenizer=_tokenizer(args.tokenizer), command="data synth",
        inputs={"rules": args.rules or _packaged_rules(), "tokenizer": args.tokenizer})
    _summary(manifest)
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from taosr1_verl.data.builders import read_teacher_jsonl
    from taosr1_verl.data.errors import DropReport
    from taosr1_verl.data.prepare import prepare_dataset
    from taosr1_verl.data.readers import (
        ESCI_EXAMPLES,
        ESCI_PRODUCTS,
        ColumnMap,
        read_esci,
        read_pairs,
        read_wands,
    )
    from taosr1_verl.data.split import parse_splits

    report = DropReport()
    if args.esci:
        schema, source = args.schema or "esci", "esci"
        pairs = read_esci(args.esci, schema=schema, locale=args.locale, on_error=args.on_error, report=report)
        inputs = {"examples": Path(args.esci) / ESCI_EXAMPLES, "products": Path(args.esci) / ESCI_PRODUCTS}
    elif args.wands:
        schema, source = args.schema or "wands", "wands"
        pairs = read_wands(args.wands, schema=schema, on_error=args.on_error, report=report)
        inputs = {f: Path(args.wands) / f"{f}.csv" for f in ("query", "product", "label")}
    else:
        schema, source = args.schema or "taosr1", Path(args.input).stem
        pairs = read_pairs(args.input, ColumnMap.parse(args.columns), schema=schema, fmt=args.input_format,
                           on_error=args.on_error, report=report)
        inputs = {"input": args.input}
    for path in inputs.values():
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file" if not Path(path).exists() else f"{path}: not a file")
    inputs.update(teacher=args.teacher, tokenizer=args.tokenizer)
    teacher = read_teacher_jsonl(args.teacher) if args.teacher else None
    options = {"source": source, "input": args.input or args.esci or args.wands, "columns": args.columns,
               "locale": args.locale, "on_error": args.on_error, "teacher_file": args.teacher}
    manifest = prepare_dataset(
        pairs, args.out, splits=parse_splits(args.splits), seed=args.seed, balance_rl=not args.no_balance,
        per_class=args.per_class, config=_build_config(args, args.data_source or source, schema), teacher=teacher,
        drop_report=report, options=options, resume=not args.no_resume, progress=not args.no_progress,
        tokenizer=_tokenizer(args.tokenizer), inputs=inputs)
    _summary(manifest)
    if manifest["input"].get("dropped"):
        print(f"dropped rows and reasons: {Path(args.out) / 'dropped.jsonl'}", file=sys.stderr)
    return 0


def run_sft(args: argparse.Namespace) -> int:
    from taosr1_verl.data.builders import (
        BuildConfig,
        iter_pairs_parquet,
        read_teacher_jsonl,
        write_sft_parquet,
    )
    from taosr1_verl.prompts import PromptConfig

    cfg = BuildConfig(data_source=args.data_source, schema=args.schema,
                      prompt=PromptConfig(instructions=args.instructions))
    rep = write_sft_parquet(iter_pairs_parquet(args.pairs), args.out, read_teacher_jsonl(args.teacher), config=cfg,
                            progress=True)
    if args.problems:
        from taosr1_verl.files import atomic_write_text

        atomic_write_text(args.problems, "".join(json.dumps(x) + "\n" for x in rep.problems))
    print(json.dumps({"rows_in": rep.n_in, "rows_out": rep.n_out, "dropped": rep.dropped}))
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from taosr1_verl.data.stats import dataset_stats, format_stats

    tok = _tokenizer(args.tokenizer)
    for path in args.files:
        s = dataset_stats(path, tokenizer=tok)
        print(json.dumps(s) if args.json else format_stats(s))
    return 0


def run_teach(args: argparse.Namespace) -> int:
    from taosr1_verl.data.teacher_vllm import TeacherConfig, generate_teacher_file

    n = generate_teacher_file(args.pairs, args.model, args.out, TeacherConfig(
        rules_path=args.rules, top_k=args.top_k, max_tokens=args.max_tokens, temperature=args.temperature,
        batch_size=args.batch_size), limit=args.limit, resume=not args.no_resume)
    print(json.dumps(n))
    return 0
