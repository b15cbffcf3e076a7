"""The pass@N stage end to end: sample (resumable) -> grade -> difficulty file -> pairs -> report.

Resume (``taosr1_verl.run_manifest``): ``samples.jsonl`` grows chunk by chunk and
``samples.jsonl.manifest.json`` records the prompts, model, backend and sampling options it is drawn with;
a rerun continues it only under the same ones and refuses otherwise (``resume=False`` starts over). The
graded outputs are built in a staging directory and published with ``manifest.json`` last; a rerun whose
options, inputs and outputs all match that manifest does nothing (no model is loaded).

Example (not run: loads a model)::

    from taosr1_verl.pairs.stage import run_passn
    result = run_passn("rl_train.parquet", "out/passn", backend="vllm", model="ckpt/sft",
                       sampling=SamplingConfig(n=5), teacher="teacher.jsonl")
    result.report["outcomes"]
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taosr1_verl.files import atomic_write_bytes
from taosr1_verl.pairs.generate import Backend, SamplingConfig
from taosr1_verl.pairs.io import (
    PromptRow,
    ResponseSet,
    append_samples,
    read_prompts,
    read_responses,
    read_samples_done,
    read_teacher,
    write_difficulty,
    write_pairs,
)
from taosr1_verl.pairs.passk import mean_pass_at_k, pass_at_k_curve
from taosr1_verl.pairs.registry import get_backend
from taosr1_verl.pairs.rule import OUTCOMES, PairConfig, PairingReport, PromptGroup, decide
from taosr1_verl.rewards import get_scorer
from taosr1_verl.run_manifest import (
    OutputDir,
    RunSpec,
    discard,
    make_output_dir,
    mark_complete,
    mark_partial,
    open_resumable,
    verify,
)

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"
PAIRS_FILE = "pairs.parquet"
DIFFICULTY_FILE = "difficulty.parquet"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
PLOT_FILE = "pass_at_k.png"
OWNED = (PAIRS_FILE, "pairs.jsonl", DIFFICULTY_FILE, REPORT_MD, REPORT_JSON, PLOT_FILE)
"""The graded outputs a run publishes (``samples.jsonl`` is kept across runs of the same sampling spec)."""


@dataclass
class StageResult:
    """Where the outputs are and what happened."""

    out_dir: Path
    pairs: list[dict[str, Any]]
    report: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def sample_prompts(
    prompts: Sequence[PromptRow],
    backend: Backend,
    sampling: SamplingConfig,
    samples_path: str | os.PathLike[str],
    chunk_size: int = 64,
    progress: bool = True,
) -> tuple[ResponseSet, dict[str, float]]:
    """Sample N responses per prompt, appending each chunk to ``samples_path``; already sampled prompts
    (a previous, interrupted run) are skipped. Returns the responses and generation statistics."""
    from tqdm import tqdm

    done = read_samples_done(samples_path)
    todo = [p for p in prompts if p.index not in done.responses or len(done.responses[p.index]) != sampling.n]
    if len(todo) < len(prompts):
        logger.info("resuming: %d of %d prompts already sampled in %s", len(prompts) - len(todo), len(prompts), samples_path)
    t0 = time.perf_counter()
    new_tokens = 0
    with tqdm(total=len(todo), desc=f"pass@{sampling.n} sampling ({backend.name})", disable=not progress) as bar:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            idx = [p.index for p in chunk]
            out = backend.generate([p.prompt for p in chunk], sampling, idx)
            if len(out) != len(chunk) or any(len(s) != sampling.n for s in out):
                raise RuntimeError(f"backend {backend.name} returned the wrong number of samples")
            append_samples(samples_path, idx, out)
            for i, ss in zip(idx, out, strict=True):
                done.responses[i] = [s.text for s in ss]
                done.n_tokens[i] = [s.n_tokens for s in ss]
                new_tokens += sum(s.n_tokens for s in ss)
            bar.update(len(chunk))
    stats = {"generate_s": time.perf_counter() - t0, "generated_tokens": float(new_tokens), "sampled_prompts": float(len(todo))}
    return done, stats


def build_groups(
    prompts: Sequence[PromptRow],
    responses: ResponseSet,
    teacher: Mapping[str, str] | None,
    reward_kwargs: Mapping[str, Any] | None = None,
) -> tuple[list[PromptGroup], list[dict[str, Any]]]:
    """Grade every response with the TaoSR1 reward and group per prompt; responses whose index is not a
    prompt are returned as dropped rows with a reason."""
    scorer = get_scorer(**dict(reward_kwargs or {}))
    by_index = {p.index: p for p in prompts}
    dropped = [
        {"index": i, "responses": len(r), "reason": "index not in the prompts file"}
        for i, r in responses.responses.items()
        if i not in by_index
    ]
    groups = []
    for p in prompts:
        texts = responses.responses.get(p.index, [])
        try:
            grades = [scorer(t, p.ground_truth) for t in texts]
            scorer("", p.ground_truth)  # validates the gold label even when there are no samples
        except ValueError as e:
            raise ValueError(f"prompt index {p.index}: {e}") from None
        # A teacher file wins over the answer stored in the RL row.
        t = (teacher or {}).get(p.pair_id, p.teacher)
        groups.append(PromptGroup(p.index, p.prompt, p.ground_truth, list(texts), grades, t))
    return groups, dropped


def difficulty_rows(groups: Sequence[PromptGroup]) -> list[dict[str, Any]]:
    """Per prompt: ``index, n, correct, pass_rate, pass_at_k (k = 1..n), format_ok``."""
    rows = []
    for g in groups:
        c = g.correct
        rows.append(
            {
                "index": g.index,
                "n": g.n,
                "correct": c,
                "pass_rate": c / g.n if g.n else 0.0,
                "pass_at_k": pass_at_k_curve(g.n, c),
                "format_ok": sum(int(x["format_ok"]) for x in g.grades),
            }
        )
    return rows


def pair_and_write(
    groups: Sequence[PromptGroup],
    out_dir: str | os.PathLike[str],
    pairing: PairConfig | None = None,
    reward_kwargs: Mapping[str, Any] | None = None,
    jsonl: bool = False,
    dropped: Sequence[Mapping[str, Any]] = (),
    extra: Mapping[str, Any] | None = None,
) -> StageResult:
    """Apply the pair rule, write pairs, difficulty and report files into ``out_dir``."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scorer = get_scorer(**dict(reward_kwargs or {}))
    rep = PairingReport()
    pairs: list[dict[str, Any]] = []
    for g in groups:
        d = decide(g, pairing, scorer)
        rep.add(d)
        pairs.extend(d.pairs)
    diff = difficulty_rows(groups)
    write_pairs(pairs, out / PAIRS_FILE, jsonl=jsonl)
    write_difficulty(diff, out / DIFFICULTY_FILE)
    with_samples = [r for r in diff if r["n"] > 0]
    curve = mean_pass_at_k([r["n"] for r in with_samples], [r["correct"] for r in with_samples])
    n_samples = sum(r["n"] for r in diff)
    report: dict[str, Any] = {
        **rep.as_dict(),
        "samples": n_samples,
        "correct_samples": sum(r["correct"] for r in diff),
        "malformed_samples": n_samples - sum(r["format_ok"] for r in diff),
        "pass_at_k": curve,
        "pairing": asdict(pairing or PairConfig()),
        "reward": dict(reward_kwargs or {}),
        "dropped_responses": list(dropped),
        **dict(extra or {}),
    }
    write_report(report, out)
    t_pair = time.perf_counter() - t0
    return StageResult(out, pairs, report, {"pair_builder_s": t_pair})


def write_report(report: Mapping[str, Any], out_dir: Path) -> None:
    """``report.json``, ``report.md`` (outcome table, pass@k table) and the pass@k plot."""
    atomic_write_bytes(out_dir / REPORT_JSON, json.dumps(report, indent=1, default=str).encode())
    lines = ["# pass@N report", "", f"Prompts: {report['prompts']}, samples: {report['samples']}, "
             f"correct: {report['correct_samples']}, malformed: {report['malformed_samples']}, pairs: {report['pairs']}.",
             "", "| outcome | prompts |", "|---|---|"]
    lines += [f"| {o} | {report['outcomes'][o]} |" for o in OUTCOMES]
    lines += ["", "| k | pass@k |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in enumerate(report["pass_at_k"], 1)]
    if report.get("dropped_responses"):
        lines += ["", f"Dropped response rows: {len(report['dropped_responses'])} (see report.json)."]
    if report["pass_at_k"]:
        _plot(report["pass_at_k"], out_dir / PLOT_FILE)
        lines += ["", f"![pass@k]({PLOT_FILE})"]
    atomic_write_bytes(out_dir / REPORT_MD, ("\n".join(lines) + "\n").encode())


def _plot(curve: Sequence[float], path: Path) -> None:
    from taosr1_verl.plots import figure

    with figure(path, figsize=(4, 3)) as (_, ax):
        ks = list(range(1, len(curve) + 1))
        ax.plot(ks, curve, marker="o")
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k (unbiased)")
        ax.set_ylim(0, 1)
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)


def _model_input(model: str | os.PathLike[str] | None, backend: Any) -> str | dict[str, str]:
    path = model or getattr(getattr(backend, "tokenizer", None), "name_or_path", None)
    if path and Path(path).exists():
        return str(path)
    return {"name": str(path or getattr(backend, "name", "backend"))}


def _already_done(out: Path, spec: RunSpec) -> StageResult | None:
    verdict = verify(out, spec)
    if not verdict.complete:
        if verdict.manifest is not None:
            logger.info("%s: running again (%s)", out, verdict.reason)
        return None
    logger.info("%s is complete for these options and inputs; nothing to do", out)
    import pyarrow.parquet as pq

    report = json.loads((out / REPORT_JSON).read_text(encoding="utf-8"))
    return StageResult(out, pq.read_table(out / PAIRS_FILE).to_pylist(), report)


def _publish(out: Path, spec: RunSpec, groups: Sequence[PromptGroup], pairing: PairConfig | None,
             reward_kwargs: Mapping[str, Any] | None, jsonl: bool, dropped: Sequence[Mapping[str, Any]],
             extra: Mapping[str, Any], keep: Sequence[str] = ()) -> StageResult:
    with OutputDir(out, spec, owned=OWNED) as od:
        result = pair_and_write(groups, od.staging, pairing, reward_kwargs, jsonl, dropped, extra=extra)
        od.commit(keep=keep)
    result.out_dir = out
    return result


def run_passn(
    prompts_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    backend: str | Backend = "vllm",
    model: str | None = None,
    sampling: SamplingConfig | None = None,
    pairing: PairConfig | None = None,
    reward_kwargs: Mapping[str, Any] | None = None,
    teacher: str | os.PathLike[str] | None = None,
    chunk_size: int = 64,
    jsonl: bool = False,
    backend_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
    resume: bool = True,
) -> StageResult:
    """Sample N responses per prompt with our backend, then grade, pair and report (resumable).

    ``resume=False`` discards what ``out_dir`` holds (samples included) and starts over; otherwise samples
    drawn with another model, backend, prompts file or sampling options are refused
    (:class:`taosr1_verl.errors.UserError`) instead of being graded as if they were this run's.
    """
    sampling = sampling or SamplingConfig()
    out = Path(out_dir)
    own = isinstance(backend, str)
    if own and not model:
        raise ValueError("run_passn: a model path is needed to sample")
    inputs = {"prompts": prompts_path, "model": _model_input(model, None if own else backend)}
    sample_spec = RunSpec("passn samples", {"backend": backend if own else backend.name,
                                            "sampling": asdict(sampling)}, inputs)
    spec = RunSpec("passn", {**sample_spec.options, "pairing": asdict(pairing or PairConfig()),
                             "reward": dict(reward_kwargs or {}), "jsonl": jsonl}, {**inputs, "teacher": teacher})
    if resume and (done := _already_done(out, spec)) is not None:
        return done
    make_output_dir(out)
    if not resume:
        discard(out, OWNED)
    samples = out / SAMPLES_FILE
    status = open_resumable(samples, sample_spec, resume=resume)
    prompts = read_prompts(prompts_path)
    teach = read_teacher(teacher) if teacher else None
    have = read_samples_done(samples).responses if status != "fresh" else {}
    missing = sum(1 for p in prompts if len(have.get(p.index, ())) != sampling.n)
    startup = 0.0
    if missing:
        mark_partial(samples, sample_spec)
        if own:
            t0 = time.perf_counter()
            be = get_backend(backend, model, **dict(backend_kwargs or {}))
            startup = time.perf_counter() - t0
        else:
            be = backend
        try:
            responses, stats = sample_prompts(prompts, be, sampling, samples, chunk_size, progress)
        finally:
            if own:
                be.close()
    else:
        responses = read_samples_done(samples)
        stats = {"generate_s": 0.0, "generated_tokens": 0.0, "sampled_prompts": 0.0}
    if status != "complete" or missing:
        mark_complete(samples, sample_spec, {"prompts": len(prompts)})
    t0 = time.perf_counter()
    groups, dropped = build_groups(prompts, responses, teach, reward_kwargs)
    t_grade = time.perf_counter() - t0
    result = _publish(out, spec, groups, pairing, reward_kwargs, jsonl, dropped,
                      {"backend": sample_spec.options["backend"], "sampling": asdict(sampling),
                       "generation": {**stats, "startup_s": startup}}, keep=[SAMPLES_FILE])
    result.timings.update(stats, startup_s=startup, grade_s=t_grade)
    return result


def run_pairs(
    responses_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    prompts_path: str | os.PathLike[str] | None = None,
    pairing: PairConfig | None = None,
    reward_kwargs: Mapping[str, Any] | None = None,
    teacher: str | os.PathLike[str] | None = None,
    jsonl: bool = False,
    resume: bool = True,
) -> StageResult:
    """Grade, pair and report responses generated elsewhere (verl generation parquet or JSONL).

    Rerun with the same responses, prompts, teacher and options, it does nothing (``resume=False`` redoes it).
    """
    out = Path(out_dir)
    spec = RunSpec("pairs", {"pairing": asdict(pairing or PairConfig()), "reward": dict(reward_kwargs or {}),
                             "jsonl": jsonl},
                   {"responses": responses_path, "prompts": prompts_path, "teacher": teacher})
    if resume and (done := _already_done(out, spec)) is not None:
        return done
    responses, prompts = read_responses(responses_path)
    if prompts is None:
        if prompts_path is None:
            raise ValueError(f"{responses_path}: a JSONL of responses needs the prompts parquet (--prompts)")
        prompts = read_prompts(prompts_path)
    teach = read_teacher(teacher) if teacher else None
    groups, dropped = build_groups(prompts, responses, teach, reward_kwargs)
    return _publish(out, spec, groups, pairing, reward_kwargs, jsonl, [*responses.dropped, *dropped],
                    {"responses_file": str(responses_path)})
