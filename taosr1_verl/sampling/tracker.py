"""Per-prompt difficulty: recency-weighted pass-rate estimates keyed by dataset index.

Every prompt (dataset index = ``extra_info.index`` of the RL parquet) carries a Beta belief about the
probability that one rollout is correct::

    a = prior_a + w * succ,  b = prior_b + w * fail,  w = 0.5 ** ((step - last_step) / half_life)

``succ``/``fail`` are the correct/wrong rollouts seen so far, each older observation already discounted the
same way when the newer one was added. Old evidence fades because the policy changes, so a prompt that was
too easy or too hard becomes uncertain again and gets re-checked. The belief is seeded from the pass@N file
of the DPO stage (:meth:`DifficultyTracker.seed_from_passn`) and updated with every finished GRPO group.

GRPO trains on every group whose rollouts disagree (``0 < correct < n``), and training on a prompt raises its
pass rate, so evidence gathered before such a group understates the prompt's current pass rate. The tracker
records, per prompt, ``trained``: the evidence-weighted mean number of groups with signal that came after each
observation. ``beta(..., learn_shift=s)`` moves the belief's mean up by ``s * trained`` in log-odds (strength
unchanged); :class:`~taosr1_verl.sampling.policy.PolicyConfig` ``learn_shift`` sets ``s``.

Memory is 17 bytes per prompt (float32 succ, float32 fail, int32 last step, uint16 group count, int8 gold
level, float16 ``trained``): 170 MB for 10M prompts. Pure numpy.

Pass@N file layout (written by the DPO stage, read by :meth:`~DifficultyTracker.seed_from_passn`): a parquet
with int ``index``, int ``n`` (samples drawn), int ``correct`` (how many were correct), float ``pass_rate``
(``correct / n``) and optionally ``pass_at_k`` (list of floats). See ``docs/sampling.md``.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from taosr1_verl.files import atomic_path

logger = logging.getLogger(__name__)

_ARRAYS: dict[str, Any] = {
    "succ": np.float32,
    "fail": np.float32,
    "last_step": np.int32,
    "groups": np.uint16,
    "level": np.int8,
    "trained": np.float16,
}
# Arrays added after the first release: a state without them loads with zeros.
_OPTIONAL = ("trained",)
UNKNOWN_LEVEL = -1
_U16_MAX = int(np.iinfo(np.uint16).max)


def sorted_groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal keys: ``(order, starts)`` such that ``key[order]`` is sorted (equal keys by position) and
    ``starts`` marks the first element of each group in that order.

    ``key`` is uint64 below ``2 ** (64 - bits)``, ``bits`` the bit length of ``len(key) - 1``: it is packed with
    each element's position and sorted with one plain sort, several times cheaper than the argsort inside
    ``np.unique``.
    """
    n = key.size
    bits = np.uint64(max(1, (n - 1).bit_length()))
    packed = (key << bits) | np.arange(n, dtype=np.uint64)
    packed.sort()
    order = (packed & ((np.uint64(1) << bits) - np.uint64(1))).astype(np.intp)
    packed >>= bits
    starts = np.empty(n, dtype=bool)
    starts[:1] = True
    np.not_equal(packed[1:], packed[:-1], out=starts[1:])
    return order, starts


def group_inverse(order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Group number of each element for :func:`sorted_groups`' output (numbered in key order, as
    ``np.unique(..., return_inverse=True)``)."""
    firsts = np.flatnonzero(starts)
    inverse = np.empty(order.size, dtype=np.intp)
    inverse[order] = np.repeat(np.arange(firsts.size), np.diff(firsts, append=order.size))
    return inverse


@dataclass(frozen=True)
class TrackerConfig:
    """How evidence about a prompt is weighed."""

    half_life: float | None = 50.0
    """Training steps after which an observation counts half (``None``: never fades)."""
    prior_mean: float = 0.5
    """Prior pass rate of a prompt never seen."""
    prior_strength: float = 2.0
    """Pseudo-rollouts behind the prior (``prior_mean=0.5, prior_strength=2`` is a uniform Beta(1, 1))."""
    seed_weight: float = 1.0
    """Weight of one pass@N sample relative to one GRPO rollout when seeding."""
    max_index: int = 2**31 - 2
    """Largest dataset index accepted: the tables are dense arrays indexed by it."""

    def __post_init__(self) -> None:
        if self.half_life is not None and not self.half_life > 0:
            raise ValueError(f"TrackerConfig.half_life must be > 0 or None, got {self.half_life}")
        if not 0.0 < self.prior_mean < 1.0:
            raise ValueError(f"TrackerConfig.prior_mean must be in (0, 1), got {self.prior_mean}")
        if not self.prior_strength > 0:
            raise ValueError(f"TrackerConfig.prior_strength must be > 0, got {self.prior_strength}")
        if self.seed_weight < 0:
            raise ValueError(f"TrackerConfig.seed_weight must be >= 0, got {self.seed_weight}")


@dataclass(frozen=True)
class SeedReport:
    """What :meth:`DifficultyTracker.seed_from_passn` did with each row of the file."""

    path: str
    rows: int
    seeded: int
    dropped: dict[str, int]


class DifficultyTracker:
    """Recency-weighted pass-rate beliefs for up to ``max_index + 1`` prompts.

    Example:
        >>> t = DifficultyTracker(4)
        >>> t.update([0, 1], correct=[8, 0], n=8, step=1)
        >>> t.pass_rate([0, 1, 2]).round(2).tolist()
        [0.9, 0.1, 0.5]
        >>> t.groups[:3].tolist()
        [1, 1, 0]
        >>> t.update([2], correct=4, n=8, step=2)  # a group with signal: GRPO trains on prompt 2
        >>> float(t.trained[2]), round(float(t.pass_rate([2], learn_shift=0.5)[0]), 3)
        (1.0, 0.598)
    """

    def __init__(self, size: int = 0, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.step = 0
        self._alloc(int(size))

    def _alloc(self, size: int) -> None:
        for name, dtype in _ARRAYS.items():
            fill = UNKNOWN_LEVEL if name == "level" else 0
            setattr(self, name, np.full(size, fill, dtype=dtype))
        self.groups_observed = 0
        """Sum of ``groups`` (kept by :meth:`update`, so metrics cost O(batch), not O(prompts))."""
        self.prompts_seen = 0
        """Prompts with at least one group (``count_nonzero(groups)``), kept the same way."""

    def recount(self) -> None:
        """Derive :attr:`groups_observed` and :attr:`prompts_seen` from ``groups`` (O(prompts)); call it after
        writing ``groups`` directly."""
        self.groups_observed = int(self.groups.sum(dtype=np.int64))
        self.prompts_seen = int(np.count_nonzero(self.groups))

    # ---- size ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.succ.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the per-prompt tables."""
        return sum(getattr(self, name).nbytes for name in _ARRAYS)

    def ensure_size(self, size: int) -> None:
        """Grow the tables (amortised doubling) so that indices ``< size`` are valid."""
        if size - 1 > self.config.max_index:
            raise ValueError(
                f"DifficultyTracker: dataset index {size - 1} exceeds max_index {self.config.max_index}; "
                "indices must be dense positions (extra_info.index), not hashed ids"
            )
        n = len(self)
        if size <= n:
            return
        new = max(size, min(2 * n, self.config.max_index + 1))
        for name in _ARRAYS:
            old = getattr(self, name)
            grown = np.full(new, UNKNOWN_LEVEL if name == "level" else 0, dtype=old.dtype)
            grown[:n] = old
            setattr(self, name, grown)

    def _indices(self, indices: Any, grow: bool) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and idx.min() < 0:
            raise ValueError(f"DifficultyTracker: negative dataset index {int(idx.min())}")
        if idx.size:
            top = int(idx.max()) + 1
            if grow:
                self.ensure_size(top)
            elif top > len(self):
                raise IndexError(f"DifficultyTracker: index {top - 1} >= size {len(self)}")
        return idx

    # ---- evidence ------------------------------------------------------------------------------
    def set_step(self, step: int) -> None:
        """Advance the clock that ages evidence (a training step counter; never moves back)."""
        self.step = max(self.step, int(step))

    def _fade(self, last: np.ndarray, step: int | None = None) -> np.ndarray:
        hl = self.config.half_life
        if hl is None:
            return np.ones(last.shape, dtype=np.float64)
        now = self.step if step is None else step
        return np.exp2(-np.maximum(now - last.astype(np.float64), 0.0) / hl)

    def update(self, indices: Any, correct: Any, n: Any, step: int | None = None, levels: Any = None) -> None:
        """Add finished groups: ``correct[i]`` of ``n[i]`` rollouts of prompt ``indices[i]`` were correct.

        Repeated indices within one call all count. ``levels`` (gold label levels) are stored when given.
        """
        if step is not None:
            self.set_step(step)
        idx = self._indices(indices, grow=True)
        c = np.broadcast_to(np.asarray(correct, dtype=np.float64), idx.shape)
        nn = np.broadcast_to(np.asarray(n, dtype=np.float64), idx.shape)
        if np.any(nn < 0) or np.any(c < 0) or np.any(c > nn):
            raise ValueError("DifficultyTracker.update: need 0 <= correct <= n for every group")
        order, starts = sorted_groups(idx.astype(np.uint64))
        first = order[starts]
        uniq = idx[first]
        w = self._fade(self.last_step[uniq])
        old_succ = self.succ[uniq] * w
        old_fail = self.fail[uniq] * w
        self.last_step[uniq] = self.step
        signal_c = ((c > 0) & (c < nn)).astype(np.float64)
        if uniq.size == idx.size:
            # No repeats (the usual batch): the per-index sums are the values themselves, exactly as bincount
            # would add them to 0.0.
            new_succ, new, signal = c[first], nn[first], signal_c[first]
            counts = np.ones(uniq.size, dtype=np.int64)
        else:
            # Sums per unique index (repeats all count): bincount is much cheaper than np.add.at.
            inv = group_inverse(order, starts)
            new_succ = np.bincount(inv, weights=c, minlength=uniq.size)
            new = np.bincount(inv, weights=nn, minlength=uniq.size)
            signal = np.bincount(inv, weights=signal_c, minlength=uniq.size)
            counts = np.bincount(inv, minlength=uniq.size)
        self.succ[uniq] = (old_succ + new_succ).astype(np.float32)
        self.fail[uniq] = (old_fail + (new - new_succ)).astype(np.float32)
        # New evidence has no training after it; then every group with signal adds one training after all of
        # the prompt's evidence (repeats within one call are taken as coming after all of their evidence).
        old = old_succ + old_fail
        total = old + new
        mean_old = np.divide(old, total, out=np.zeros_like(old), where=total > 0)
        self.trained[uniq] = np.minimum(self.trained[uniq] * mean_old + signal, 6e4).astype(np.float16)
        old_groups = self.groups[uniq].astype(np.int64)
        new_groups = np.minimum(old_groups + counts, _U16_MAX)
        self.groups[uniq] = new_groups
        self.groups_observed += int((new_groups - old_groups).sum())
        self.prompts_seen += int(np.count_nonzero(old_groups == 0))
        if levels is not None:
            self.set_levels(idx, levels)

    def set_levels(self, indices: Any, levels: Any) -> None:
        """Record gold label levels (for class balance); ``-1`` means unknown."""
        idx = self._indices(indices, grow=True)
        lv = np.broadcast_to(np.asarray(levels, dtype=np.int64), idx.shape)
        if np.any((lv < -1) | (lv > 127)):
            raise ValueError("DifficultyTracker.set_levels: levels must be in [-1, 127]")
        self.level[idx] = lv

    def beta(
        self, indices: Any, step: int | None = None, learn_shift: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Beta parameters ``(a, b)`` of the current belief for each index (float64).

        ``learn_shift``: log-odds by which one training on a prompt is assumed to raise its pass rate; the
        evidence part of the belief is moved up by ``learn_shift * trained`` (0: the plain recency-weighted
        counts).
        """
        idx = self._indices(indices, grow=False)
        w = self._fade(self.last_step[idx], step)
        cfg = self.config
        succ = w * self.succ[idx]
        fail = w * self.fail[idx]
        if learn_shift:
            # Move the evidence's mean in log-odds, keeping its weight (how sure we are stays the same). Only
            # prompts trained on since their evidence move; a one-sided record has no finite log-odds to move.
            tr = self.trained[idx]
            m = np.flatnonzero((tr != 0) & (succ > 0) & (fail > 0))
            if m.size:
                s_m, f_m = succ[m], fail[m]
                odds = s_m / f_m * np.exp(learn_shift * tr[m].astype(np.float64))
                succ[m] = (s_m + f_m) * (odds / (1.0 + odds))
                fail[m] = s_m + f_m - succ[m]
        a = cfg.prior_mean * cfg.prior_strength + succ
        b = (1.0 - cfg.prior_mean) * cfg.prior_strength + fail
        return a, b

    def same_beliefs(self, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(rep, inverse)``: one index per distinct stored belief among ``indices`` (all of them in the
        unlikely case of a hash collision, which is detected), and for each index the position of its
        representative in ``rep``.

        A value computed per belief for ``rep`` (:meth:`beta`, a keep probability) and taken at ``inverse`` is
        bit for bit the value computed for ``indices`` directly, at a fraction of the cost when prompts share
        beliefs, as never-seen prompts and pass@N seeds with the same count do.
        """
        idx = self._indices(indices, grow=False)
        if idx.size < 2:
            return idx, np.zeros(idx.size, dtype=np.intp)
        u64 = np.uint64
        k1 = (self.succ[idx].view(np.uint32).astype(u64) << u64(32)) | self.fail[idx].view(np.uint32)
        k2 = (self.last_step[idx].view(np.uint32).astype(u64) << u64(16)) | self.trained[idx].view(np.uint16)
        # One 64-bit hash of the four fields (multiply-xorshift); its top bits go to the sort.
        h = k1 * u64(0x9E3779B97F4A7C15)
        h ^= k2 * u64(0xC2B2AE3D27D4EB4F)
        h ^= h >> u64(29)
        h *= u64(0x94D049BB133111EB)
        h >>= u64(max(1, (idx.size - 1).bit_length()))
        order, starts = sorted_groups(h)
        # A hash collision would merge different beliefs: check that each group's fields are all equal.
        for k in (k1, k2):
            ks = k[order]
            if not np.all((ks[1:] == ks[:-1]) | starts[1:]):
                return idx, np.arange(idx.size, dtype=np.intp)
        first = order[starts]
        inverse = group_inverse(order, starts)
        return idx[first], inverse

    def pass_rate(self, indices: Any, step: int | None = None, learn_shift: float = 0.0) -> np.ndarray:
        """Posterior mean pass rate (``learn_shift``: see :meth:`beta`)."""
        a, b = self.beta(indices, step, learn_shift)
        return a / (a + b)

    def uncertainty(self, indices: Any, step: int | None = None, learn_shift: float = 0.0) -> np.ndarray:
        """Posterior standard deviation of the pass rate (``learn_shift``: see :meth:`beta`)."""
        a, b = self.beta(indices, step, learn_shift)
        s = a + b
        return np.sqrt(a * b / (s * s * (s + 1.0)))

    # ---- seeding -------------------------------------------------------------------------------
    def seed_from_passn(self, path: str | os.PathLike[str], step: int | None = None) -> SeedReport:
        """Seed beliefs from the DPO stage's pass@N parquet (columns ``index``, ``n``, ``correct``).

        Rows with a missing or invalid field are dropped and counted by reason (``report.dropped``); a
        missing column is an error naming the file. Seeded evidence replaces what the tracker held for those
        indices and is aged from ``step`` (default: the current step).
        """
        import pyarrow.parquet as pq

        path = str(path)
        if not Path(path).is_file():
            raise FileNotFoundError(f"pass@N file {path} does not exist")
        table = pq.read_table(path)
        missing = [c for c in ("index", "n", "correct") if c not in table.column_names]
        if missing:
            raise ValueError(f"{path}: pass@N file lacks column(s) {missing}; has {table.column_names}")
        cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in ("index", "n", "correct")}
        rows = table.num_rows
        dropped: Counter[str] = Counter()
        ok = np.ones(rows, dtype=bool)
        vals = {}
        for c in ("index", "n", "correct"):
            v = np.asarray(cols[c], dtype=np.float64) if cols[c].dtype != object else np.array(
                [np.nan if x is None else float(x) for x in cols[c]]
            )
            bad = ~np.isfinite(v) | (v != np.round(v))
            dropped[f"{c}: missing or not an integer"] += int(np.sum(bad & ok))
            ok &= ~bad
            vals[c] = np.where(bad, 0, v).astype(np.int64)
        checks = (
            ("index: negative", vals["index"] < 0),
            (f"index: above max_index {self.config.max_index}", vals["index"] > self.config.max_index),
            ("n: not positive", vals["n"] <= 0),
            ("correct: outside [0, n]", (vals["correct"] < 0) | (vals["correct"] > vals["n"])),
        )
        for reason, bad in checks:
            dropped[reason] += int(np.sum(bad & ok))
            ok &= ~bad
        idx, nn, c = vals["index"][ok], vals["n"][ok], vals["correct"][ok]
        uniq, first = np.unique(idx[::-1], return_index=True)
        dup = idx.size - uniq.size
        if dup:
            # The last row of an index wins, as in a log that appends newer results.
            dropped["index: duplicate (last row kept)"] += dup
            keep = idx.size - 1 - first
            idx, nn, c = idx[keep], nn[keep], c[keep]
        for reason, count in list(dropped.items()):
            if count == 0:
                del dropped[reason]
            else:
                logger.warning("%s: dropped %d pass@N row(s): %s", path, count, reason)
        if step is not None:
            self.set_step(step)
        self.ensure_size(int(idx.max()) + 1 if idx.size else 0)
        w = self.config.seed_weight
        self.succ[idx] = (w * c).astype(np.float32)
        self.fail[idx] = (w * (nn - c)).astype(np.float32)
        self.last_step[idx] = self.step
        self.trained[idx] = 0  # the seeded evidence replaces everything, trainings after it included
        logger.info("%s: seeded %d of %d prompts from pass@N", path, idx.size, rows)
        return SeedReport(path=path, rows=rows, seeded=int(idx.size), dropped=dict(dropped))

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Arrays (numpy, copied) plus step and config; restores exactly with :meth:`load_state_dict`."""
        sd: dict[str, Any] = {name: getattr(self, name).copy() for name in _ARRAYS}
        sd["step"] = int(self.step)
        sd["config"] = json.dumps(asdict(self.config))
        sd["groups_observed"] = int(self.groups_observed)
        sd["prompts_seen"] = int(self.prompts_seen)
        return sd

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore in place (objects holding this tracker see the restored state)."""
        missing = [k for k in (*_ARRAYS, "step") if k not in state and k not in _OPTIONAL]
        if missing:
            raise ValueError(f"DifficultyTracker state lacks {missing}")
        sizes = {np.asarray(state[name]).shape for name in _ARRAYS if name in state}
        if len(sizes) != 1 or len(next(iter(sizes))) != 1:
            raise ValueError(f"DifficultyTracker state: arrays have inconsistent shapes {sizes}")
        size = next(iter(sizes))
        for name, dtype in _ARRAYS.items():
            if name in state:
                setattr(self, name, np.array(state[name], dtype=dtype, copy=True))
            else:
                setattr(self, name, np.zeros(size, dtype=dtype))
        self.step = int(state["step"])
        if "config" in state:
            self.config = TrackerConfig(**json.loads(str(state["config"])))
        if "groups_observed" in state and "prompts_seen" in state:
            self.groups_observed = int(state["groups_observed"])
            self.prompts_seen = int(state["prompts_seen"])
        else:
            self.recount()  # a state saved before the counters existed: derive them once

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write an ``.npz`` atomically (no pickle inside)."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in self.state_dict().items()})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DifficultyTracker:
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
        t = cls(0)
        state["config"] = str(state["config"])
        t.load_state_dict(state)
        return t
