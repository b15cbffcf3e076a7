"""Streaming preparation of 1M raw judgment rows: wall time and peak memory, streaming vs materialised.

Run: flock /tmp/taosr1-heavy.lock taskset -c 0 .venv/bin/python bench/bench_prepare.py [--n 1000000]
Writes an N-row TSV judgment file (synthetic pairs exported in a real-data layout: query and item ids, query, title,
attributes as JSON, label) once, then runs the full `prepare` pipeline (read + validate + dedup check +
split by query + pairs/RL(balanced)/eval parquet + stats) in a fresh child process per variant:

* streaming: ``prepare_dataset(read_pairs(...))`` (what ``taosr1 data prepare`` does);
* materialised: the same, with the pairs first read into a Python list (the alternative).

Each child reports its own peak RSS (``ru_maxrss``). Single thread (OMP/MKL threads 1, pinned by taskset);
one run per variant by default (``--repeat`` for medians). Prints a table with ratios to streaming.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_file(path: Path, n: int) -> None:
    from taosr1_verl.data.synth import SynthConfig, iter_synthetic

    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("query_id\tquery\titem_id\ttitle\tattributes\tlabel\n")
        for p in iter_synthetic(SynthConfig(n_pairs=n, seed=0)):
            f.write(f"{p.query_id}\t{p.query}\t{p.item_id}\t{p.title}\t{json.dumps(p.attributes)}\t{p.level}\n")
    os.replace(tmp, path)


def child(mode: str, path: str, out: str) -> None:
    from taosr1_verl.data.errors import DropReport
    from taosr1_verl.data.prepare import prepare_dataset
    from taosr1_verl.data.readers import ColumnMap, read_pairs

    report = DropReport()
    t = time.perf_counter()
    pairs = read_pairs(path, ColumnMap(attributes="attributes", query_id="query_id", item_id="item_id"), on_error="skip", report=report)
    if mode == "materialised":
        pairs = list(pairs)
    m = prepare_dataset(pairs, out, drop_report=report, resume=False, progress=False)
    wall = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "peak_rss_mb": rss_mb, "input": m["input"],
                      "rl_rows": m["files"]["rl_train.parquet"]["n_out"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "PATH", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_prepare_"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"judgments_ids_{args.n}.tsv"
    if not src.exists():
        t = time.perf_counter()
        make_file(src, args.n)
        print(f"wrote {src} ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    results: dict[str, list[dict]] = {"streaming": [], "materialised": []}
    for _ in range(args.repeat):
        for mode in results:
            proc = subprocess.run([sys.executable, __file__, "--child", mode, str(src), str(work / f"out_{mode}")],
                                  env=env, capture_output=True, text=True, check=True)
            results[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = {k: statistics.median(r[k] for r in results["streaming"]) for k in ("wall_s", "peak_rss_mb")}
    print(f"N = {args.n} rows, {args.repeat} run(s) per variant (median), 1 thread, "
          f"affinity {sorted(os.sched_getaffinity(0))}; input {results['streaming'][0]['input']}\n")
    print("| variant | wall s | peak RSS MB | wall ratio | memory ratio |")
    print("|---|---|---|---|---|")
    for mode, rs in results.items():
        w = statistics.median(r["wall_s"] for r in rs)
        m = statistics.median(r["peak_rss_mb"] for r in rs)
        print(f"| {mode} | {w:.1f} | {m:.0f} | {w / base['wall_s']:.2f} | {m / base['peak_rss_mb']:.2f} |")


if __name__ == "__main__":
    main()
