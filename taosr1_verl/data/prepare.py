"""The whole data stage in one streaming pass: pairs -> split by query -> pairs/RL/eval/SFT parquet + reports.

Outputs in ``out_dir`` (each written atomically):

* ``pairs_<split>.parquet``: the normalised pairs of each split (``PAIRS_SCHEMA``);
* ``rl_train.parquet``: verl RL rows of the train split, class-balanced by default (CV 0);
* ``eval_<split>.parquet``: every other split in the RL layout, unbalanced;
* ``sft_train.parquet`` / ``sft_val.parquet``: when a teacher is given;
* ``sft_<split>_problems.jsonl``: pairs whose teacher answer was missing or invalid;
* ``dropped.jsonl``: the drop report of the readers (kept + dropped == input);
* ``manifest.json``: options, row counts, class CV before/after, stats of every file.

Re-running with the same options and an existing ``manifest.json`` does nothing (``resume``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

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
from taosr1_verl.files import atomic_write_json

logger = logging.getLogger(__name__)


def prepare_dataset(
    pairs: Iterable[Pair], out_dir: str | os.PathLike[str], *, splits: Mapping[str, float] | None = None,
    seed: int = 0, balance_rl: bool = True, per_class: int | None = None, config: BuildConfig | None = None,
    teacher: Mapping[str, str] | Callable[[Pair], str | None] | None = None, drop_report: DropReport | None = None,
    options: Mapping[str, Any] | None = None, resume: bool = True, progress: bool = True, tokenizer: Any = None,
) -> dict[str, Any]:
    """Split ``pairs`` by query and write every dataset file; returns the manifest (also ``manifest.json``).

    ``options`` (the caller's own arguments, e.g. the CLI's) go into the manifest and decide whether an
    existing output directory is already complete.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or BuildConfig()
    splits = dict(splits or DEFAULT_SPLITS)
    opts = {"splits": splits, "seed": seed, "balance_rl": balance_rl, "per_class": per_class,
            "data_source": cfg.data_source, "schema": cfg.schema, "fmt": cfg.fmt,
            "instructions": cfg.prompt.instructions, "teacher": teacher is not None, **(options or {})}
    opts = json.loads(json.dumps(opts, default=str))
    mpath = out / "manifest.json"
    if resume and mpath.exists():
        old = json.loads(mpath.read_text(encoding="utf-8"))
        if old.get("options") == opts:
            logger.info("%s is already prepared with these options; nothing to do", out)
            return old
        logger.info("%s holds a dataset prepared with other options; rebuilding", out)
    splitter = QuerySplitter(splits, seed)
    writers = {name: AtomicParquet(out / f"pairs_{name}.parquet", PAIRS_SCHEMA) for name in splitter.names}
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
        drop_report.write(out / "dropped.jsonl")
    files: dict[str, Any] = {}
    train = "train" if "train" in splitter.names else splitter.names[0]
    tpath = out / f"pairs_{train}.parquet"
    rep = write_rl_parquet(iter_pairs_parquet(tpath), out / f"rl_{train}.parquet", split=train,
                           balance=balance_rl, counts=level_counts_parquet(tpath), per_class=per_class,
                           seed=seed, config=cfg, progress=progress,
                           teacher=teacher if callable(teacher) else None)
    files[f"rl_{train}.parquet"] = rep.to_dict()
    for name in splitter.names:
        if name == train:
            continue
        rep = write_eval_parquet(iter_pairs_parquet(out / f"pairs_{name}.parquet"), out / f"eval_{name}.parquet",
                                 split=name, config=cfg, progress=progress,
                                 teacher=teacher if callable(teacher) else None)
        files[f"eval_{name}.parquet"] = rep.to_dict()
    if teacher is not None:
        for name in splitter.names:
            if name == "test":
                continue  # the test split stays unseen by every training stage
            rep = write_sft_parquet(iter_pairs_parquet(out / f"pairs_{name}.parquet"), out / f"sft_{name}.parquet",
                                    teacher, split=name, config=cfg, progress=progress)
            files[f"sft_{name}.parquet"] = rep.to_dict()
            if rep.problems:
                with open(out / f"sft_{name}_problems.jsonl", "w", encoding="utf-8") as f:
                    f.writelines(json.dumps(x) + "\n" for x in rep.problems)
    for fname, info in files.items():
        info["stats"] = dataset_stats(out / fname, tokenizer=tokenizer)
        info.pop("problems", None)
    manifest = {"options": opts, "pairs_per_split": counts,
                "input": drop_report.summary() if drop_report is not None else {"kept": sum(counts.values())},
                "files": files}
    atomic_write_json(mpath, manifest)
    return manifest
