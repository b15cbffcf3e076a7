"""The whole data stage in one streaming pass: pairs -> split by query -> pairs/RL/eval/SFT parquet + reports.

Outputs in ``out_dir`` (each written atomically):

* ``pairs_<split>.parquet``: the normalised pairs of each split (``PAIRS_SCHEMA``);
* ``rl_train.parquet``: verl RL rows of the train split, class-balanced by default (CV 0);
* ``eval_<split>.parquet``: every other split in the RL layout, unbalanced;
* ``sft_train.parquet`` / ``sft_val.parquet``: when a teacher is given;
* ``sft_<split>_problems.jsonl``: pairs whose teacher answer was missing or invalid;
* ``dropped.jsonl``: the drop report of the readers (kept + dropped == input);
* ``manifest.json``: written last: options, input and output fingerprints, row counts, class CV
  before/after, stats of every file.

Resume (``taosr1_verl.run_manifest``): the directory is complete only when ``manifest.json`` matches the
options, the inputs (``inputs=``: the files the pairs were read from, the teacher file, ...) and every output
file; then nothing is rebuilt. Otherwise the whole set is rebuilt in a staging directory and published with
the manifest last, so an interrupted rebuild never leaves a directory that reads as complete.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from taosr1_verl import __version__
from taosr1_verl.data.builders import (
    PAIRS_SCHEMA,
    AtomicParquet,
    BuildConfig,
    iter_pairs_parquet,
    level_counts_parquet,
    progress_iter,
    write_eval_parquet,
    write_rl_parquet,
    write_sft_parquet,
)
from taosr1_verl.data.errors import DropReport
from taosr1_verl.data.pairs import Pair
from taosr1_verl.data.split import DEFAULT_SPLITS, QuerySplitter
from taosr1_verl.data.stats import dataset_stats
from taosr1_verl.errors import UserError
from taosr1_verl.files import atomic_path
from taosr1_verl.run_manifest import OutputDir, RunSpec, verify

logger = logging.getLogger(__name__)


OWNED = ("pairs_*.parquet", "rl_*.parquet", "eval_*.parquet", "sft_*.parquet", "sft_*_problems.jsonl",
         "dropped.jsonl")
"""The files ``prepare_dataset`` writes: a rebuild removes old ones of these names that it does not write."""


def prepare_dataset(
    pairs: Iterable[Pair], out_dir: str | os.PathLike[str], *, splits: Mapping[str, float] | None = None,
    seed: int = 0, balance_rl: bool = True, per_class: int | None = None, config: BuildConfig | None = None,
    teacher: Mapping[str, str] | Callable[[Pair], str | None] | None = None, drop_report: DropReport | None = None,
    options: Mapping[str, Any] | None = None, resume: bool = True, progress: bool = True, tokenizer: Any = None,
    inputs: Mapping[str, str | os.PathLike[str] | None] | None = None, command: str = "data prepare",
) -> dict[str, Any]:
    """Split ``pairs`` by query and write every dataset file; returns the manifest (also ``manifest.json``).

    ``options`` (the caller's own arguments, e.g. the CLI's) and ``inputs`` (the files ``pairs`` and the
    teacher come from, by role) go into the manifest: the directory counts as already prepared only when
    both, and every output file, still match. ``pairs`` is not consumed in that case.
    """
    out = Path(out_dir)
    cfg = config or BuildConfig()
    splits = dict(splits or DEFAULT_SPLITS)
    if per_class is not None and per_class < 1:
        raise UserError(f"per_class must be a positive number of rows, got {per_class}")
    splitter = QuerySplitter(splits, seed)
    opts = {"splits": splits, "seed": seed, "balance_rl": balance_rl, "per_class": per_class,
            "data_source": cfg.data_source, "schema": cfg.schema, "fmt": cfg.fmt,
            "instructions": cfg.prompt.instructions, "teacher": teacher is not None,
            "tokenizer": getattr(tokenizer, "name_or_path", None), "version": __version__, **(options or {})}
    spec = RunSpec(command, opts, dict(inputs or {}))
    if resume:
        verdict = verify(out, spec)
        if verdict.complete:
            logger.info("%s is already prepared with these options and inputs; nothing to do", out)
            return verdict.manifest
        if verdict.manifest is not None:
            logger.info("%s: rebuilding (%s)", out, verdict.reason)
    with OutputDir(out, spec, owned=OWNED) as od:
        manifest = _build(pairs, od, splitter, seed, balance_rl, per_class, cfg, teacher, drop_report, progress,
                          tokenizer)
    return manifest


def _build(pairs: Iterable[Pair], od: OutputDir, splitter: QuerySplitter, seed: int, balance_rl: bool,
           per_class: int | None, cfg: BuildConfig, teacher: Any, drop_report: DropReport | None, progress: bool,
           tokenizer: Any) -> dict[str, Any]:
    writers = {name: AtomicParquet(od.path(f"pairs_{name}.parquet"), PAIRS_SCHEMA) for name in splitter.names}
    counts = dict.fromkeys(splitter.names, 0)
    try:
        for p in progress_iter(pairs, None, "read + split", progress):
            name = splitter(p.query)
            writers[name].add(p.to_record())
            counts[name] += 1
    except BaseException as e:
        for w in writers.values():
            w.__exit__(type(e), e, None)
        raise
    for w in writers.values():
        w.__exit__(None, None, None)
    if drop_report is not None:
        drop_report.check()
        drop_report.write(od.path("dropped.jsonl"))
    files: dict[str, Any] = {}
    train = "train" if "train" in splitter.names else splitter.names[0]
    tpath = od.path(f"pairs_{train}.parquet")
    rep = write_rl_parquet(iter_pairs_parquet(tpath), od.path(f"rl_{train}.parquet"), split=train,
                           balance=balance_rl, counts=level_counts_parquet(tpath), per_class=per_class,
                           seed=seed, config=cfg, progress=progress,
                           teacher=teacher if callable(teacher) else None)
    files[f"rl_{train}.parquet"] = rep.to_dict()
    for name in splitter.names:
        if name == train:
            continue
        rep = write_eval_parquet(iter_pairs_parquet(od.path(f"pairs_{name}.parquet")),
                                 od.path(f"eval_{name}.parquet"), split=name, config=cfg, progress=progress,
                                 teacher=teacher if callable(teacher) else None)
        files[f"eval_{name}.parquet"] = rep.to_dict()
    if teacher is not None:
        for name in splitter.names:
            if name == "test":
                continue  # the test split stays unseen by every training stage
            rep = write_sft_parquet(iter_pairs_parquet(od.path(f"pairs_{name}.parquet")),
                                    od.path(f"sft_{name}.parquet"), teacher, split=name, config=cfg,
                                    progress=progress)
            files[f"sft_{name}.parquet"] = rep.to_dict()
            if rep.problems:
                with atomic_path(od.path(f"sft_{name}_problems.jsonl")) as tmp, open(tmp, "w", encoding="utf-8") as f:
                    f.writelines(json.dumps(x) + "\n" for x in rep.problems)
    for fname, info in files.items():
        info["stats"] = dataset_stats(od.path(fname), tokenizer=tokenizer)
        info["path"] = str(od.out / fname)
        info.pop("problems", None)
    return od.commit({"pairs_per_split": counts,
                      "input": drop_report.summary() if drop_report is not None else {"kept": sum(counts.values())},
                      "files": files})
