"""AutoFAS against the pre-ranking students people deploy: a latency-quality frontier and the cascade.

Every method is distilled from the same teacher cache with the same loss
(:func:`taosr1_verl.autofas.student.distill`), costed with the same latency table (:mod:`.latency`, extraction
included) and evaluated on the same held-out queries, for every seed in :attr:`FrontierConfig.seeds`:

- ``two-tower``: query tower x item tower, dot product (:mod:`.twotower`), one point per vector size;
- ``mlp``: a hand-designed MLP on every feature field, ``n_layers`` layers of one width, one point per width;
- ``random-best``: at each budget, ``n_random`` random architectures within [0.6, 1] x the budget, each
  trained on the search's fitting split, the best by distillation loss on its validation split retrained on
  the whole training split (the mean of all of them is kept as ``random_mean_auc``);
- ``autofas``: the search at each budget (:func:`.search.run_search`), the derived student retrained.

Budgets (unless given) run geometrically from the two-tower's cost up to the largest architecture's.
With :attr:`FrontierConfig.measure` every student is also exported and served as deployed
(:mod:`.serve`: catalog precomputed, one request = query + ``batch_size`` candidates) and its per-item cost
measured: the frontier's x axis.

**Cascade** (with a cascade teacher cache: queries with hundreds of candidates each): the student ranks each
query's candidates, keeps its top ``k``, the teacher scores only those. Reported per student: recall of the
teacher's Good items among the kept ``k`` (teacher tiers by CumPT), and the cost per query
``n x student + k x teacher`` against ``n x teacher`` (the teacher's first-token cost per item measured in the
run when a teacher model is given).

Resume: ``points.jsonl`` holds one line per finished point keyed by everything it depends on (options, teacher
and cascade tables, latency table); a rerun skips matching points. The outputs are published with the manifest
last (:mod:`taosr1_verl.run_manifest`), as ``autofas search`` does.

Example:
    >>> FrontierConfig().seeds, FrontierConfig().n_budgets
    ((0, 1, 2), 5)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taosr1_verl.autofas.features import FeatureExtractor
from taosr1_verl.autofas.latency import LatencyTable
from taosr1_verl.autofas.report import agreement_metrics
from taosr1_verl.autofas.run import (
    AutoFASConfig,
    latency_table,
    query_key,
    split_by_query,
    teacher_fingerprint,
)
from taosr1_verl.autofas.search import largest_architecture, random_architecture, run_search
from taosr1_verl.autofas.space import Architecture
from taosr1_verl.autofas.student import distill, distill_loss, predict, to_tensors, train_student
from taosr1_verl.autofas.teacher import TeacherTable
from taosr1_verl.files import atomic_write_json, atomic_write_text
from taosr1_verl.run_manifest import OutputDir, RunSpec, make_output_dir, verify

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("two-tower", "mlp", "random-best", "autofas")
OWNED = ("frontier.json", "frontier.md", "frontier.png", "cascade.png", "features.json")
"""Outputs a frontier run publishes besides its caches (``latency.json``, ``points.jsonl``)."""


@dataclass(frozen=True)
class FrontierConfig:
    """One frontier run (see the module docstring)."""

    base: AutoFASConfig = field(default_factory=lambda: AutoFASConfig(n_random=0, measure_exported=False))
    """Features, search space, search and training settings, latency runtime, batch, threads, splits."""
    budgets_us: tuple[float, ...] = ()
    """Search budgets, µs per item; empty: :attr:`n_budgets` from the two-tower's cost up."""
    n_budgets: int = 5
    seeds: tuple[int, ...] = (0, 1, 2)
    n_random: int = 5
    """Random architectures per budget and seed (the best one on validation is the baseline point)."""
    two_tower_dims: tuple[int, ...] = (8, 32)
    mlp_widths: tuple[int, ...] = ()
    """Widths of the hand-designed MLPs (every layer that wide); empty: the search space's widths."""
    measure: bool = True
    """Export every student and measure its per-request cost as deployed."""
    cascade_k: tuple[int, ...] = (50, 100)
    """Candidates the student passes on to the teacher, per query."""

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("FrontierConfig.seeds must not be empty")
        if self.n_budgets < 1 and not self.budgets_us:
            raise ValueError("FrontierConfig: need n_budgets >= 1 or budgets_us")
        if any(b <= 0 for b in self.budgets_us):
            raise ValueError(f"FrontierConfig.budgets_us must be positive, got {self.budgets_us}")
        if any(k < 1 for k in self.cascade_k) or any(d < 1 for d in self.two_tower_dims):
            raise ValueError("FrontierConfig: cascade_k and two_tower_dims must be >= 1")


def resolve_budgets(cfg: FrontierConfig, table: LatencyTable, field_names: Sequence[str]) -> list[float]:
    """The search budgets: given, or geometric from the cheapest two-tower's cost to the largest student's."""
    if cfg.budgets_us:
        return sorted(float(b) for b in cfg.budgets_us)
    hi = table.discrete(largest_architecture(field_names, cfg.base.space), cfg.base.space)
    lo = min(table.two_tower_us.values()) if table.two_tower_us else hi / 16
    lo = min(lo, hi)
    return [float(b) for b in np.geomspace(lo, hi, cfg.n_budgets)] if cfg.n_budgets > 1 else [lo]


# ---- cascade -------------------------------------------------------------------------------------------------
def cascade_recall(student_scores: np.ndarray, good: np.ndarray, query_ids: Sequence[str], k: int) -> dict[str, float]:
    """Per query: the share of the teacher's Good candidates among the student's top ``k`` (queries with a
    Good candidate), its ceiling ``min(k, |Good|) / |Good|``, and what keeping ``k`` at random would get."""
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(query_ids):
        groups.setdefault(q, []).append(i)
    rec, ceil, rand, n = [], [], [], []
    for rows in groups.values():
        r = np.asarray(rows)
        g = good[r]
        if not g.any():
            continue
        # Stable: ties keep candidate order, so equal scores give a deterministic cut.
        top = r[np.argsort(-student_scores[r], kind="stable")[:k]]
        rec.append(good[top].sum() / g.sum())
        ceil.append(min(k, g.sum()) / g.sum())
        rand.append(min(k, len(r)) / len(r))
        n.append(len(r))
    nan = float("nan")
    return {"recall": float(np.mean(rec)) if rec else nan, "ceiling": float(np.mean(ceil)) if ceil else nan,
            "random": float(np.mean(rand)) if rand else nan, "queries": len(rec),
            "candidates": float(np.mean(n)) if n else nan}


# ---- one point -------------------------------------------------------------------------------------------------
@dataclass
class _Data:
    ex: FeatureExtractor
    table: LatencyTable
    x_train: dict[str, torch.Tensor]
    t_train: torch.Tensor
    fit_idx: torch.Tensor
    val_idx: torch.Tensor
    x_test: dict[str, torch.Tensor]
    test: TeacherTable
    sample: list
    queries: list[str]
    cascade: TeacherTable | None
    x_cascade: dict[str, torch.Tensor] | None
    workdir: Path


def _metrics(d: _Data, probs: np.ndarray, cfg: FrontierConfig) -> dict[str, float]:
    return agreement_metrics(probs, d.test.probs, d.test.schema.level_values, d.test.tiers,
                             [query_key(p) for p in d.test.pairs], [p.level for p in d.test.pairs], k=cfg.base.k)


def _finish(d: _Data, cfg: FrontierConfig, net: torch.nn.Module, row: dict[str, Any]) -> dict[str, Any]:
    """Held-out metrics, cascade recall and (with ``measure``) the deployed per-request cost of ``net``."""
    from taosr1_verl.autofas.serve import StudentScorer, TwoTowerScorer, measure_request_us
    from taosr1_verl.autofas.twotower import TwoTower

    row["metrics"] = _metrics(d, predict(net, d.x_test), cfg)
    if d.cascade is not None and d.x_cascade is not None:
        scores = predict(net, d.x_cascade) @ np.asarray(d.cascade.schema.level_values, dtype=np.float64)
        good = np.asarray(d.cascade.tiers) == "Good"
        qids = [query_key(p) for p in d.cascade.pairs]
        row["cascade"] = {str(k): cascade_recall(scores, good, qids, k) for k in cfg.cascade_k}
    if cfg.measure:
        rows = np.resize(np.arange(len(d.sample)), cfg.base.batch_size)
        if isinstance(net, TwoTower):
            scorer: Any = TwoTowerScorer(d.ex, net, d.workdir, cfg.base.threads)
        else:
            scorer = StudentScorer.from_net(d.ex, net, d.workdir, cfg.base.threads)
        scorer.index(d.sample)
        row["measured_us"] = measure_request_us(scorer.score, d.queries, rows, threads=cfg.base.threads)
    logger.info("%s seed %d %s: table %.3f us, measured %s us, AUC(Good) %.4f", row["method"], row["seed"],
                row.get("label", ""), row["table_us"], _r(row.get("measured_us")), row["metrics"]["auc_good"])
    return row


def _r(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _student(d: _Data, cfg: FrontierConfig, arch: Architecture, seed: int, row: dict[str, Any]) -> dict[str, Any]:
    train = replace(cfg.base.train, seed=seed)
    net = train_student(arch, d.ex.specs, cfg.base.features, d.x_train, d.t_train, train)
    row.update(arch=arch.to_dict(), table_us=d.table.discrete(arch, cfg.base.space))
    return _finish(d, cfg, net, row)


def _two_tower(d: _Data, cfg: FrontierConfig, dim: int, seed: int) -> dict[str, Any]:
    from taosr1_verl.autofas.twotower import TwoTower

    torch.manual_seed(seed)
    net = TwoTower(d.ex.specs, cfg.base.features, dim, d.t_train.shape[1])
    distill(net, d.x_train, d.t_train, replace(cfg.base.train, seed=seed), f"two-tower d={dim}")
    row = {"method": "two-tower", "seed": seed, "label": f"d={dim}", "dim": dim,
           "table_us": d.table.two_tower_us[str(dim)]}
    return _finish(d, cfg, net, row)


def _random_best(d: _Data, cfg: FrontierConfig, budget: float, seed: int) -> dict[str, Any]:
    names = [s.name for s in d.ex.specs]
    rng = random.Random(f"random-best/{seed}/{budget:.6g}")
    x_fit = {k: v[d.fit_idx] for k, v in d.x_train.items()}
    x_val = {k: v[d.val_idx] for k, v in d.x_train.items()}
    train = replace(cfg.base.train, seed=seed)
    tried = []
    for _ in range(cfg.n_random):
        arch = random_architecture(names, cfg.base.space, d.table, budget, rng)
        net = train_student(arch, d.ex.specs, cfg.base.features, x_fit, d.t_train[d.fit_idx], train)
        with torch.inference_mode():
            val = float(distill_loss(net.batch_logits(x_val), d.t_train[d.val_idx]))
        test_auc = _metrics(d, predict(net, d.x_test), cfg)["auc_good"]
        tried.append({"arch": arch.to_dict(), "val_kd": val, "test_auc_good": test_auc,
                      "table_us": d.table.discrete(arch, cfg.base.space)})
    best = min(tried, key=lambda t: t["val_kd"])
    row = {"method": "random-best", "seed": seed, "budget_us": budget, "label": f"budget {budget:.3g}",
           "tried": tried, "random_mean_auc": float(np.nanmean([t["test_auc_good"] for t in tried]))}
    return _student(d, cfg, Architecture.from_dict(best["arch"]), seed, row)


def _autofas(d: _Data, cfg: FrontierConfig, budget: float, seed: int) -> dict[str, Any]:
    search = replace(cfg.base.search, budget_us=budget, seed=seed)
    result = run_search(d.ex.specs, cfg.base.features, cfg.base.space, d.table,
                        {k: v[d.fit_idx] for k, v in d.x_train.items()}, d.t_train[d.fit_idx],
                        {k: v[d.val_idx] for k, v in d.x_train.items()}, d.t_train[d.val_idx], search)
    row = {"method": "autofas", "seed": seed, "budget_us": budget, "label": f"budget {budget:.3g}",
           "repaired": result.repaired, "field_probs": result.field_probs}
    return _student(d, cfg, result.arch, seed, row)


# ---- the run ---------------------------------------------------------------------------------------------------
def _plan(cfg: FrontierConfig, budgets: Sequence[float], names: Sequence[str]) -> list[dict[str, Any]]:
    widths = cfg.mlp_widths or cfg.base.space.widths
    plan = []
    for seed in cfg.seeds:
        plan += [{"method": "two-tower", "seed": seed, "dim": d} for d in cfg.two_tower_dims]
        plan += [{"method": "mlp", "seed": seed, "width": w} for w in widths]
        for b in budgets:
            plan += [{"method": "random-best", "seed": seed, "budget_us": b},
                     {"method": "autofas", "seed": seed, "budget_us": b}]
    return plan


def _run_point(d: _Data, cfg: FrontierConfig, p: Mapping[str, Any]) -> dict[str, Any]:
    if p["method"] == "two-tower":
        return _two_tower(d, cfg, p["dim"], p["seed"])
    if p["method"] == "mlp":
        names = tuple(s.name for s in d.ex.specs)
        arch = Architecture(names, tuple([p["width"]] * cfg.base.space.n_layers))
        return _student(d, cfg, arch, p["seed"], {"method": "mlp", "seed": p["seed"], "label": f"w={p['width']}"})
    if p["method"] == "random-best":
        return _random_best(d, cfg, p["budget_us"], p["seed"])
    return _autofas(d, cfg, p["budget_us"], p["seed"])


def _key(spec: Mapping[str, Any], p: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"spec": spec, "point": p}, sort_keys=True, default=str).encode()).hexdigest()


def _read_points(path: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return out
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        try:
            rec = json.loads(line)
            out[rec["key"]] = rec["result"]
        except (json.JSONDecodeError, KeyError, TypeError):
            # A line cut by a kill mid-write: that point is simply run again.
            logger.warning("%s: line %d unreadable, its point will run again", path, i + 1)
    return out


def run_frontier(table: TeacherTable, out_dir: str | os.PathLike[str], cfg: FrontierConfig | None = None,
                 cascade: TeacherTable | None = None, teacher_us: float | None = None,
                 teacher_note: str = "", progress: bool = False) -> dict[str, Any]:
    """Train and evaluate every method at every budget and seed; write ``frontier.json``/``.md``/``.png``.

    ``cascade``: a teacher cache of queries with many candidates each (for the cascade table);
    ``teacher_us``: the teacher's first-token cost per item on this machine (for the cascade's cost columns).
    """
    from tqdm.auto import tqdm

    cfg = cfg or FrontierConfig()
    out = make_output_dir(out_dir)
    inputs: dict[str, Any] = {"teacher_cache": teacher_fingerprint(table)}
    if cascade is not None:
        inputs["cascade_cache"] = teacher_fingerprint(cascade)
    options = {"config": asdict(cfg), "teacher_us": teacher_us}
    spec = RunSpec("autofas frontier", options, inputs)
    verdict = verify(out, spec)
    if verdict.complete:
        logger.info("%s is complete for this config and these teacher tables; nothing to do", out)
        return json.loads((out / "frontier.json").read_text(encoding="utf-8"))
    if verdict.manifest is not None:
        logger.info("%s: running again (%s)", out, verdict.reason)
    base = cfg.base
    with OutputDir(out, spec, owned=OWNED) as od, tempfile.TemporaryDirectory(dir=out, prefix=".work-") as work:
        torch.set_num_threads(base.threads)
        train_rows, test_rows = split_by_query(table.pairs, base.test_fraction, "test")
        train, test = table.subset(train_rows), table.subset(test_rows)
        fit_rows, val_rows = split_by_query(train.pairs, base.val_fraction, "val")
        ex = FeatureExtractor(base.features).fit(train.pairs)
        atomic_write_json(od.path("features.json"), ex.to_dict(), default=float)
        sample = train.pairs[:1024]
        lat = latency_table(out, base, ex, len(table.schema), progress, sample, cfg.two_tower_dims)
        names = [s.name for s in ex.specs]
        budgets = resolve_budgets(cfg, lat, names)
        d = _Data(ex=ex, table=lat, x_train=to_tensors(ex.transform(train.pairs)),
                  t_train=torch.from_numpy(train.probs).float(), fit_idx=torch.tensor(fit_rows),
                  val_idx=torch.tensor(val_rows), x_test=to_tensors(ex.transform(test.pairs)), test=test,
                  sample=sample, queries=list(dict.fromkeys(p.query for p in sample))[:16], cascade=cascade,
                  x_cascade=to_tensors(ex.transform(cascade.pairs)) if cascade is not None else None,
                  workdir=Path(work))
        # A point carries its own seed, budget, width or size: the plan's lists are not part of its key, so a run
        # with more seeds or budgets reuses the points it shares with an earlier one.
        point_opts = {k: v for k, v in spec.options["config"].items()
                      if k not in ("seeds", "budgets_us", "n_budgets", "two_tower_dims", "mlp_widths")}
        key_spec = {"options": point_opts, "inputs": spec.fingerprints(), "latency": lat.meta.get("created")}
        points_path = out / "points.jsonl"
        done = _read_points(points_path)
        results = []
        plan = _plan(cfg, budgets, names)
        with points_path.open("a", encoding="utf-8") as log:
            for p in tqdm(plan, desc="frontier", disable=not progress):
                k = _key(key_spec, p)
                if k in done:
                    results.append(done[k])
                    continue
                res = _run_point(d, cfg, p)
                log.write(json.dumps({"key": k, "result": res}, default=float) + "\n")
                log.flush()
                results.append(res)
        report = summarise(results, budgets, cfg, lat, table, cascade, teacher_us, teacher_note)
        report["plots"] = plot_frontier(od.staging, report)
        atomic_write_json(od.path("frontier.json"), report, default=float)
        atomic_write_text(od.path("frontier.md"), render_frontier(report))
        od.commit(keep=["latency.json", "points.jsonl"])
    return report


# ---- summary ---------------------------------------------------------------------------------------------------
def _stats(vals: Sequence[float]) -> dict[str, float]:
    v = [x for x in vals if x is not None and np.isfinite(x)]
    if not v:
        return {"mean": float("nan"), "median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": float(np.mean(v)), "median": float(statistics.median(v)), "min": float(min(v)),
            "max": float(max(v)), "n": len(v)}


def summarise(results: Sequence[Mapping[str, Any]], budgets: Sequence[float], cfg: FrontierConfig,
              lat: LatencyTable, table: TeacherTable, cascade: TeacherTable | None, teacher_us: float | None,
              teacher_note: str = "") -> dict[str, Any]:
    """One row per method and configuration (a budget, a width, a vector size) with its spread over seeds,
    the verdict at each budget, and the cascade table."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["method"], r["label"]), []).append(r)
    rows = []
    for (method, label), rs in groups.items():
        row: dict[str, Any] = {
            "method": method, "label": label, "seeds": [r["seed"] for r in rs],
            "budget_us": rs[0].get("budget_us"),
            "table_us": _stats([r["table_us"] for r in rs]),
            "measured_us": _stats([r.get("measured_us") for r in rs]),
            "archs": [r.get("arch") for r in rs],
        }
        for m in ("auc_good", "auc_not_bad", "ndcg_student", "overlap_at_k", "recall_k_in_m", "kl"):
            row[m] = _stats([r["metrics"].get(m) for r in rs])
        if method == "random-best":
            row["random_mean_auc"] = _stats([r["random_mean_auc"] for r in rs])
        if cascade is not None:
            row["cascade"] = {str(k): {"recall": _stats([r["cascade"][str(k)]["recall"] for r in rs]),
                                       "ceiling": rs[0]["cascade"][str(k)]["ceiling"],
                                       "random": rs[0]["cascade"][str(k)]["random"],
                                       "candidates": rs[0]["cascade"][str(k)]["candidates"]}
                              for k in cfg.cascade_k}
        rows.append(row)
    order = {m: i for i, m in enumerate(METHODS)}
    rows.sort(key=lambda r: (order.get(r["method"], 9), r["table_us"]["median"]))
    report: dict[str, Any] = {
        "teacher": table.teacher, "teacher_note": teacher_note, "n_pairs": len(table.pairs),
        "cascade_teacher": cascade.teacher if cascade is not None else None,
        "cascade_pairs": len(cascade.pairs) if cascade is not None else 0,
        "budgets_us": list(budgets), "seeds": list(cfg.seeds), "latency_backend": lat.backend,
        "batch_size": lat.batch_size, "threads": lat.threads, "extraction": lat.meta.get("extraction"),
        "teacher_us": teacher_us, "rows": rows, "verdicts": verdicts(rows, budgets), "config": asdict(cfg),
        "points": list(results),
    }
    return report


def _cost(row: Mapping[str, Any]) -> float:
    m = row["measured_us"]["median"]
    return m if np.isfinite(m) else row["table_us"]["median"]


def verdicts(rows: Sequence[Mapping[str, Any]], budgets: Sequence[float], metric: str = "auc_good"
             ) -> list[dict[str, Any]]:
    """At each budget: AutoFAS's mean against the best baseline configuration that costs no more than
    AutoFAS's own student (table latency), with both seed spreads; ``above``: a higher mean; ``clear``: a
    margin larger than both spreads (max - min over seeds)."""
    out = []
    for b in budgets:
        ours = next((r for r in rows if r["method"] == "autofas" and r["budget_us"] == b), None)
        if ours is None:
            continue
        cost = ours["table_us"]["max"]
        rivals = [r for r in rows if r["method"] != "autofas" and r["table_us"]["median"] <= cost * 1.02]
        best = max(rivals, key=lambda r: r[metric]["mean"], default=None)
        v: dict[str, Any] = {"budget_us": b, "autofas_us": ours["table_us"]["median"], "autofas": ours[metric]["mean"],
                             "autofas_spread": ours[metric]["max"] - ours[metric]["min"]}
        if best is None:
            v.update(best=None, margin=None, above=None, clear=None)
        else:
            margin = ours[metric]["mean"] - best[metric]["mean"]
            spread = max(v["autofas_spread"], best[metric]["max"] - best[metric]["min"])
            v.update(best=f"{best['method']} {best['label']}", best_us=best["table_us"]["median"],
                     best_value=best[metric]["mean"], best_spread=best[metric]["max"] - best[metric]["min"],
                     margin=margin, above=margin > 0, clear=margin > spread)
        out.append(v)
    return out


def _f(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _pm(s: Mapping[str, float]) -> str:
    if not s.get("n"):
        return "n/a"
    return f"{s['mean']:.3f} [{s['min']:.3f}, {s['max']:.3f}]"


def render_frontier(report: Mapping[str, Any]) -> str:
    lines = [
        "# AutoFAS latency-quality frontier", "",
        f"Teacher: `{report['teacher']}`{' (' + report['teacher_note'] + ')' if report.get('teacher_note') else ''}; "
        f"{report['n_pairs']} pairs; seeds {report['seeds']}; latency table {report['latency_backend']}, batch "
        f"{report['batch_size']}, {report['threads']} thread(s), extraction `{report['extraction']}`.",
        "", "Values: mean over seeds [min, max]. `table` = the latency table's µs/item (what the search optimises); "
        "`measured` = the deployed request (extraction + model) per item, median over seeds.", "",
        "| method | config | table µs/item | measured µs/item | AUC(Good) | NDCG@5 | overlap@k | KL |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(f"| {r['method']} | {r['label']} | {_f(r['table_us']['median'])} | "
                     f"{_f(r['measured_us']['median'])} | {_pm(r['auc_good'])} | {_pm(r['ndcg_student'])} | "
                     f"{_pm(r['overlap_at_k'])} | {_pm(r['kl'])} |")
    lines += ["", "## At each budget (AUC(Good); best baseline costing no more than AutoFAS's student)", "",
              "| budget µs | AutoFAS µs | AutoFAS | best baseline | its µs | its AUC | margin | above | beyond spread |",
              "|---|---|---|---|---|---|---|---|---|"]
    for v in report["verdicts"]:
        lines.append(f"| {_f(v['budget_us'])} | {_f(v['autofas_us'])} | {_f(v['autofas'])} ± {_f(v['autofas_spread'])} "
                     f"| {v['best'] or 'none'} | {_f(v.get('best_us'))} | {_f(v.get('best_value'))} ± "
                     f"{_f(v.get('best_spread'))} | {_f(v['margin'])} | {v['above']} | {v['clear']} |")
    if report.get("cascade_pairs"):
        lines += ["", render_cascade(report)]
    rnd = [r for r in report["rows"] if r["method"] == "random-best"]
    if rnd:
        lines += ["", "Random architectures: the mean of all drawn (not only the best) per budget: "
                  + ", ".join(f"{r['label']}: {_f(r['random_mean_auc']['mean'])}" for r in rnd) + "."]
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in report.get("plots", [])), ""]
    return "\n".join(lines)


def render_cascade(report: Mapping[str, Any]) -> str:
    t_us = report.get("teacher_us")
    ks = [str(k) for k in report["config"]["cascade_k"]]
    first = next(r for r in report["rows"] if "cascade" in r)
    n = first["cascade"][ks[0]]["candidates"]
    head = (f"## Cascade: {_f(n, 0)} candidates per query -> student keeps k -> teacher (first-token CumPT) "
            f"scores k\n\nCascade teacher: `{report['cascade_teacher']}`; {report['cascade_pairs']} candidates. "
            "Recall: share of the teacher's Good candidates of a query among the k kept (mean over queries "
            "[min, max over seeds]); ceiling = min(k, |Good|)/|Good|; ")
    if t_us:
        head += (f"teacher first-token {t_us:,.0f} µs/item on this machine, so scoring all candidates costs "
                 f"{n * t_us / 1000:,.1f} ms/query. Cost/query = n x student (measured) + k x teacher.")
    else:
        head += "no teacher timing given: cost columns omitted."
    cols = " | ".join(f"recall@{k} | ms/query@{k} | x cheaper@{k}" if t_us else f"recall@{k}" for k in ks)
    lines = [head, "", f"| method | config | student µs/item | {cols} |",
             "|---|---|---|" + "---|" * (len(ks) * (3 if t_us else 1))]
    ceil = " | ".join(f"{_f(first['cascade'][k]['ceiling'])} | | " if t_us else _f(first["cascade"][k]["ceiling"])
                      for k in ks)
    rand = " | ".join(f"{_f(first['cascade'][k]['random'])} | | " if t_us else _f(first["cascade"][k]["random"])
                      for k in ks)
    lines += [f"| ceiling | | | {ceil} |", f"| random order | | | {rand} |"]
    for r in report["rows"]:
        if "cascade" not in r:
            continue
        s_us = _cost(r)
        cells = []
        for k in ks:
            cells.append(_pm(r["cascade"][k]["recall"]))
            if t_us:
                ms = (n * s_us + int(k) * t_us) / 1000
                cells += [f"{ms:,.1f}", f"{n * t_us / 1000 / ms:,.1f}x"]
        lines.append(f"| {r['method']} | {r['label']} | {_f(s_us)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_frontier(out_dir: str | os.PathLike[str], report: Mapping[str, Any]) -> list[str]:
    """``frontier.png``: AUC(Good) and NDCG@5 against µs/item, one curve per method (mean over seeds, bars
    min-max); ``cascade.png``: recall of the teacher's Good items against cost per query."""
    from matplotlib import ticker

    from taosr1_verl.plots import figure

    out = Path(out_dir)
    files = ["frontier.png"]
    colours = dict(zip(METHODS, ("tab:gray", "tab:blue", "tab:orange", "tab:red"), strict=True))
    with figure(out / "frontier.png", ncols=2, figsize=(11, 4)) as (fig, axes):
        for ax, metric, name in ((axes[0], "auc_good", "AUC vs teacher Good tier"),
                                 (axes[1], "ndcg_student", "NDCG@5 vs gold")):
            for method in METHODS:
                rs = sorted((r for r in report["rows"] if r["method"] == method), key=_cost)
                if not rs:
                    continue
                y = [r[metric]["mean"] for r in rs]
                # Clipped at 0: a mean of equal values can round a hair past its min or max.
                err = [[max(r[metric]["mean"] - r[metric]["min"], 0.0) for r in rs],
                       [max(r[metric]["max"] - r[metric]["mean"], 0.0) for r in rs]]
                ax.errorbar([_cost(r) for r in rs], y, yerr=err, marker="o", capsize=3, label=method,
                            color=colours[method])
            for b in report["budgets_us"]:
                ax.axvline(b, color="k", alpha=0.08)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.set_xlabel("µs per item (deployed request: extraction + model)")
            ax.set_ylabel(name)
            ax.legend(fontsize=8)
        fig.suptitle(f"teacher: {report['teacher']}; search budgets (table µs) as grey lines; mean over seeds, "
                     "bars min-max", fontsize=9)
    if report.get("cascade_pairs") and report.get("teacher_us"):
        ks = [str(k) for k in report["config"]["cascade_k"]]
        t_us = report["teacher_us"]
        with figure(out / "cascade.png", figsize=(6, 4)) as (fig, ax):
            for method in METHODS:
                rs = sorted((r for r in report["rows"] if r["method"] == method and "cascade" in r), key=_cost)
                for k, mk in zip(ks, ("o", "s", "^", "v"), strict=False):
                    if not rs:
                        continue
                    n = rs[0]["cascade"][k]["candidates"]
                    x = [(n * _cost(r) + int(k) * t_us) / 1000 for r in rs]
                    ax.plot(x, [r["cascade"][k]["recall"]["mean"] for r in rs], marker=mk, color=colours[method],
                            label=f"{method} k={k}")
            ax.set_xlabel("ms per query (student on all candidates + teacher on k)")
            ax.set_ylabel("recall of teacher-Good candidates")
            ax.legend(fontsize=7)
        files.append("cascade.png")
    return files


def measure_teacher_us(model_dir: str | os.PathLike[str], pairs: Sequence[Any], schema: str = "taosr1",
                       instructions: str = "full", n_items: int = 128, batch_size: int = 32, repeats: int = 3,
                       threads: int = 1) -> float:
    """The teacher's first-token scoring cost per item (µs) on this machine: ``n_items`` candidates of the
    query with the most of them, one query's items sharing their KV prefix (:class:`HFScorer`), median of
    ``repeats``, torch threads pinned."""
    import time

    from taosr1_verl.autofas.runtime import torch_threads
    from taosr1_verl.prompts import PromptConfig
    from taosr1_verl.scoring.hf import HFScorer

    groups: dict[str, list[Any]] = {}
    for p in pairs:
        groups.setdefault(query_key(p), []).append(p)
    if not groups:
        raise ValueError("measure_teacher_us: no pairs to score")
    group = max(groups.values(), key=len)[:n_items]
    items = [{"title": p.title, "attributes": p.attributes, "description": p.description} for p in group]
    pc = PromptConfig(instructions=instructions)
    scorer = HFScorer(model_dir, schema=schema, batch_size=batch_size)
    try:
        with torch_threads(threads):
            scorer.score_items(group[0].query, items[:batch_size], prompt_config=pc)  # warm-up
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                scorer.score_items(group[0].query, items, prompt_config=pc)
                samples.append((time.perf_counter() - t0) / len(items) * 1e6)
    finally:
        scorer.close()
    return float(statistics.median(samples))
