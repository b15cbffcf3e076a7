"""``taosr1 passn`` (sample N answers per prompt, grade, pair) and ``taosr1 pairs`` (the same from
responses generated elsewhere)."""

from __future__ import annotations

import argparse
import json

from taosr1_verl.commands.args import (
    input_file,
    output_dir,
    parquet_file,
    positive_float,
    positive_int,
    unit_float,
)


def _common(p: argparse.ArgumentParser) -> None:
    from taosr1_verl.pairs.rule import CHOSEN_POLICIES, REJECTED_POLICIES

    p.add_argument("--out", required=True, type=output_dir,
                   help="output directory (pairs.parquet, difficulty.parquet, report.*)")
    p.add_argument("--teacher", type=input_file,
                   help="teacher JSONL ({pair_id, response}): chosen answer when no sample is right")
    p.add_argument("--chosen", default="shortest", choices=CHOSEN_POLICIES,
                   help="which correct answer becomes chosen")
    p.add_argument("--rejected", default="confident", choices=REJECTED_POLICIES,
                   help="which wrong answer becomes rejected")
    p.add_argument("--pairs-per-prompt", type=positive_int, default=1, help="distinct pairs per prompt, at most")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling and of the random policies")
    p.add_argument("--no-teacher", action="store_true", help="never use teacher answers")
    p.add_argument("--jsonl", action="store_true", help="also write pairs.jsonl")
    p.add_argument("--reward", type=reward_options, default="{}",
                   help='reward options as JSON, e.g. \'{"schema": "esci"}\' (same as GRPO)')
    p.add_argument("--no-resume", action="store_true",
                   help="start over: discard what --out holds (a rerun otherwise does nothing when --out is complete "
                        "for these options and inputs, continues unfinished sampling, and refuses samples drawn "
                        "with another model or sampling options)")


def register(sub: argparse._SubParsersAction) -> None:
    from taosr1_verl.pairs.registry import BACKENDS

    p = sub.add_parser("passn", help="pass@N: sample N responses per RL prompt, grade, write difficulty + DPO pairs")
    p.add_argument("--prompts", required=True, type=parquet_file,
                   help="RL parquet (prompt, reward_model.ground_truth, extra_info.index)")
    p.add_argument("--model", required=True, help="SFT model directory (Hugging Face layout)")
    p.add_argument("--backend", default="vllm", choices=BACKENDS.names, help="generation backend")
    p.add_argument("-n", "--n", type=positive_int, default=5, help="samples per prompt")
    p.add_argument("--temperature", type=positive_float, default=1.0)
    p.add_argument("--top-p", type=unit_float, default=1.0)
    p.add_argument("--max-new-tokens", type=positive_int, default=256)
    p.add_argument("--chunk-size", type=positive_int, default=64,
                   help="prompts per generation call and resume checkpoint")
    p.add_argument("--threads", type=positive_int, help="hf backend: torch threads")
    p.add_argument("--batch-size", type=positive_int, default=8, help="hf backend: prompts per generate call")
    _common(p)
    p.set_defaults(func=run_passn, resumable=True)

    q = sub.add_parser("pairs", help="grade externally generated responses and build DPO pairs")
    q.add_argument("--responses", required=True, type=input_file,
                   help="verl main_generation_server parquet, or JSONL ({index, responses} or {index, response})")
    q.add_argument("--prompts", type=parquet_file,
                   help="RL parquet the JSONL indices refer to (not needed for a verl parquet)")
    _common(q)
    q.set_defaults(func=run_pairs, resumable=True)


def _pairing(args: argparse.Namespace):
    from taosr1_verl.pairs.rule import PairConfig

    return PairConfig(chosen=args.chosen, rejected=args.rejected, pairs_per_prompt=args.pairs_per_prompt,
                      seed=args.seed, use_teacher=not args.no_teacher)


def reward_options(text: str) -> dict:
    """argparse type: ``--reward`` as a JSON object of valid reward options (checked before any sampling)."""
    from taosr1_verl.rewards import get_scorer

    try:
        opts = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg}): {text!r}") from None
    if not isinstance(opts, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    try:
        get_scorer(**opts)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return opts


def _reward(args: argparse.Namespace) -> dict:
    return args.reward


def _summary(res) -> int:
    rep = res.report
    print(json.dumps({"out": str(res.out_dir), "prompts": rep["prompts"], "pairs": rep["pairs"],
                      "outcomes": rep["outcomes"], "pass_at_k": [round(x, 4) for x in rep["pass_at_k"]]}, indent=1))
    return 0


def run_passn(args: argparse.Namespace) -> int:
    from taosr1_verl.pairs.generate import SamplingConfig
    from taosr1_verl.pairs.stage import run_passn as run

    sampling = SamplingConfig(n=args.n, temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_new_tokens, seed=args.seed)
    kw: dict = {"threads": args.threads, "batch_size": args.batch_size} if args.backend == "hf" else {"seed": args.seed}
    res = run(args.prompts, args.out, backend=args.backend, model=args.model, sampling=sampling,
              pairing=_pairing(args), reward_kwargs=_reward(args), teacher=args.teacher,
              chunk_size=args.chunk_size, jsonl=args.jsonl, backend_kwargs=kw, resume=not args.no_resume)
    return _summary(res)


def run_pairs(args: argparse.Namespace) -> int:
    from taosr1_verl.pairs.stage import run_pairs as run

    res = run(args.responses, args.out, prompts_path=args.prompts, pairing=_pairing(args),
              reward_kwargs=_reward(args), teacher=args.teacher, jsonl=args.jsonl, resume=not args.no_resume)
    return _summary(res)
