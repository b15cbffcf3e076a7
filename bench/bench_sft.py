"""verl SFT on CPU with the demo's data: step rate of the CPU settings, and what the label weight buys.

Two tables from one run, on the full demo profile's data and tiny model (built here with the demo's own
``data`` and ``model`` stages):

1. speed: verl ``sft_trainer`` steps/s (batch 32) for the previous demo setup (a one-line system message in
   every row, eager attention, one thread) against no system message, and against no system message with
   SDPA attention on two threads (the demo's setup now). Each run is ``--steps`` long; the rate is the
   median of tqdm's rate over the run's second half; runs are interleaved, ``--repeats`` of each, medians.
2. quality (``--quality-steps N``, 0 skips it): first-token macro-F1 on 1,000 held-out pairs after N steps
   with label weight 1 (verl's plain loss) and ``--label-weight``, same data, seed and schedule.

    flock /tmp/taosr1-heavy.lock .venv/bin/python bench/bench_sft.py --steps 200 --repeats 2 --quality-steps 2200
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

SPEED_SETUPS = {
    # name: (system message in rows, attention, threads)
    "system message, eager, 1 thread (previous)": (True, "eager", 1),
    "no system message, eager, 1 thread": (False, "eager", 1),
    "no system message, sdpa, 2 threads (now)": (False, "sdpa", 2),
}


def demo_inputs(work: Path) -> tuple[Path, Path, Path, int]:
    """The full demo profile's data and model stages; returns (run dir, sft parquet, model, max tokens)."""
    from taosr1_verl.pipeline.demo import build_pipeline

    run = work / "run"
    build_pipeline(run, "full").run(until="model")
    max_tokens = int(json.loads((run / "model" / "stage.json").read_text())["summary"]["max_sft_tokens"])
    return run, run / "data" / "sft.parquet", run / "model" / "model", max_tokens


def with_system_message(src: Path, dst: Path) -> Path:
    """``src`` with the compact system message put back in front of every conversation."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from taosr1_verl.prompts import system_prompt

    system = {"role": "system", "content": system_prompt(instructions="compact")}
    rows = pq.read_table(src).to_pylist()
    for r in rows:
        r["messages"] = [system, *r["messages"]]
    pq.write_table(pa.Table.from_pylist(rows), dst)
    return dst


def run_sft(data: Path, model: Path, out: Path, steps: int, max_length: int, attn: str, threads: int,
            label_weight: float = 1.0) -> tuple[float, Path]:
    """One verl SFT run; returns (steps/s over the second half, output dir)."""
    from taosr1_verl.integrations.verl.supervise import run_recipe

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    result = run_recipe("sft", [
        f"model.path={model}", f"data.train_files={data}", "data.val_files=null",
        "data.train_batch_size=32", "data.micro_batch_size_per_gpu=32", f"data.max_length={max_length}",
        "optim.lr=2e-3", "optim.lr_warmup_steps_ratio=0.02", f"trainer.total_training_steps={steps}",
        "trainer.total_epochs=100", f"trainer.default_local_dir={out / 'ckpt'}", f"trainer.save_freq={steps}",
        "trainer.resume_mode=disable", "trainer.seed=0", f"model.override_config.attn_implementation={attn}",
        f"data.label_weight={label_weight}",
    ], device="cpu", log_path=out / "sft.log", env=env)
    log = (out / "sft.log").read_text()
    if not result.ok:
        raise RuntimeError(f"verl SFT failed (exit {result.returncode}); see {out / 'sft.log'}")
    rates = [float(x) for x in re.findall(r"([\d.]+)it/s\]", log)]
    return statistics.median(rates[len(rates) // 2:]), out


def first_token_f1(model: Path, test: Path) -> float:
    from taosr1_verl.evaluation.run import evaluate_to_dir
    from taosr1_verl.scoring.hf import HFScorer

    scorer = HFScorer(model, schema="taosr1", batch_size=32)
    try:
        with tempfile.TemporaryDirectory() as d:
            result = evaluate_to_dir(test, scorer, Path(d), modes=("first_token",), limit=1000)
    finally:
        scorer.close()
    return result["metrics"]["first_token_argmax"]["macro_f1"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200, help="steps per speed run")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats of each speed setup")
    ap.add_argument("--quality-steps", type=int, default=0, help="steps of the label-weight comparison (0: skip)")
    ap.add_argument("--label-weight", type=float, default=20.0)
    ap.add_argument("--work", type=Path, help="keep inputs and runs here (default: a temporary directory)")
    args = ap.parse_args(argv)

    from taosr1_verl.integrations.verl.checkpoint import merge_fsdp_checkpoint

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_sft_"))
    run, sft, model, max_tokens = demo_inputs(work)
    with_system = with_system_message(sft, work / "sft_with_system.parquet")
    max_length = max_tokens + 128  # room for the system message (about 80 tokens with its chat markup)
    rates: dict[str, list[float]] = {name: [] for name in SPEED_SETUPS}
    for rep in range(args.repeats):
        for i, (name, (system, attn, threads)) in enumerate(SPEED_SETUPS.items()):
            rate, _ = run_sft(with_system if system else sft, model, work / f"speed{i}", args.steps, max_length,
                              attn, threads)
            rates[name].append(rate)
            print(f"[repeat {rep + 1}] {name}: {rate:.2f} steps/s", file=sys.stderr, flush=True)
    base = statistics.median(next(iter(rates.values())))
    print(f"\nverl SFT steps/s, batch 32, {args.steps} steps per run, median of {args.repeats} interleaved runs "
          f"(load average {os.getloadavg()[0]:.1f} at the end)\n")
    print("| setup | steps/s | vs previous |\n|---|---|---|")
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} | {med / base:.2f}x |")
    if args.quality_steps:
        scores = {}
        for weight in (1.0, args.label_weight):
            t0 = time.time()
            _, out = run_sft(sft, model, work / f"quality_w{weight:g}", args.quality_steps, max_length, "sdpa", 2,
                             label_weight=weight)
            merge_fsdp_checkpoint(out / "ckpt", out / "model")
            scores[weight] = (first_token_f1(out / "model", run / "data" / "test.parquet"), time.time() - t0)
        print(f"\nfirst-token macro-F1 on 1,000 held-out pairs after {args.quality_steps} verl SFT steps "
              "(batch 32, lr 2e-3 cosine, seed 0)\n")
        print("| label weight | macro-F1 | wall (s) |\n|---|---|---|")
        for weight, (f1, wall) in scores.items():
            print(f"| {weight:g} | {f1:.3f} | {wall:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
