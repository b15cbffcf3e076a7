"""The TaoSR1 reward: label correctness plus format, as a verl score function and a TRL reward function.

One source of truth for "correct": GRPO (verl), pass@N grading (DPO stage) and evaluation all call
:func:`compute_score` (or :func:`score_batch`) with the same options.

verl (0.9.1) config, in a recipe or on the command line::

    reward:
      custom_reward_function:
        path: pkg://taosr1_verl.rewards     # or the file rewards/taosr1_reward.py
        name: compute_score
        reward_kwargs:                      # not in verl's shipped YAML: use `+reward...` on the CLI
          format: post_cot
          malformed_penalty: -1.0
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from taosr1_verl.config_types import coerce_fields
from taosr1_verl.response import FORMATS, ResponseFormat, make_parser
from taosr1_verl.schema import LabelSchema, get_schema

REWARD_KEYS: tuple[str, ...] = ("score", "acc", "format_ok", "pred", "gold", "false_positive")
"""Keys of every dict :func:`compute_score` returns, always all present and numeric (verl builds its
``reward_extra_info`` arrays from the first sample's keys)."""


@dataclass(frozen=True)
class RewardConfig:
    """Options of the TaoSR1 reward (all reachable through verl's ``reward_kwargs``)."""

    format: ResponseFormat = "post_cot"
    """Response format the model must follow: ``post_cot`` (label first) or ``pre_cot``."""
    correct_reward: float = 1.0
    """Score of a well-formed response with the gold label."""
    wrong_reward: float = 0.0
    """Score of a well-formed response with another label."""
    malformed_penalty: float = -1.0
    """Score of a malformed response (no parsable label, broken tags, trailing text, ...)."""
    partial_credit: bool = False
    """Ordinal partial credit: a wrong label scores ``wrong + (correct - wrong) * (1 - |pred-gold| / span)``
    where ``span`` is the distance between the schema's extreme levels. Off in TaoSR1 (binary reward)."""
    false_positive_penalty: float = 0.0
    """Subtracted when the prediction is in the Good tier but the gold label is Mid or Bad."""
    schema: str = "taosr1"
    """Label schema preset name."""

    def __post_init__(self) -> None:
        # Values arrive from YAML, Hydra overrides and JSON: coerce what is unambiguous, reject the rest by
        # name, so a score is always a number (``malformed_penalty=abc`` once made the reward return 'abc').
        coerce_fields(self, "reward option ")
        if self.format not in FORMATS:
            raise ValueError(f"reward format must be one of {FORMATS}, got {self.format!r}")
        get_schema(self.schema)
        if self.false_positive_penalty < 0:
            raise ValueError("false_positive_penalty is subtracted: give a value >= 0")
        if not self.correct_reward > self.wrong_reward:
            raise ValueError(f"correct_reward ({self.correct_reward}) must be greater than wrong_reward "
                             f"({self.wrong_reward})")
        if self.malformed_penalty > self.wrong_reward:
            raise ValueError(f"malformed_penalty is the score of a malformed response, not subtracted: give a value "
                             f"<= wrong_reward ({self.wrong_reward}), got {self.malformed_penalty}")


class _Scorer:
    """Precomputed tables for one config; ``__call__`` is the hot path."""

    __slots__ = ("cfg", "schema", "parse", "good", "span", "table")

    def __init__(self, cfg: RewardConfig, schema: LabelSchema) -> None:
        self.cfg = cfg
        self.schema = schema
        self.parse = make_parser(schema, cfg.format)
        self.good = frozenset(lv.level for lv in schema.levels if lv.tier == "Good")
        values = schema.level_values
        self.span = max(values) - min(values)
        # Exact-match lookup for the common ground-truth spellings, anything else goes to normalize(): about a
        # tenth of a well-formed call's time (bench/bench_reward.py's table).
        table: dict[Any, int] = {}
        for lv in schema.levels:
            table[lv.level] = lv.level
            table[lv.label] = lv.level
        self.table = table

    def gold_level(self, ground_truth: Any) -> int:
        try:
            gold = self.table.get(ground_truth)
        except TypeError:  # unhashable
            gold = None
        if gold is None or type(ground_truth) is bool:
            gold = self.schema.normalize(ground_truth)
        return gold

    def __call__(self, solution_str: Any, ground_truth: Any) -> dict[str, float | int]:
        gold = self.gold_level(ground_truth)
        parsed = self.parse(solution_str)
        cfg = self.cfg
        pred = parsed.level
        if pred is None:
            return {"score": cfg.malformed_penalty, "acc": 0, "format_ok": 0, "pred": 0, "gold": gold,
                    "false_positive": 0}
        fp = 1 if (pred in self.good and gold not in self.good) else 0
        if pred == gold:
            score = cfg.correct_reward
            acc = 1
        else:
            acc = 0
            score = cfg.wrong_reward
            if cfg.partial_credit:
                score += (cfg.correct_reward - cfg.wrong_reward) * (1.0 - abs(pred - gold) / self.span)
        if fp:
            score -= cfg.false_positive_penalty
        return {"score": score, "acc": acc, "format_ok": 1, "pred": pred, "gold": gold, "false_positive": fp}


# Keyword arguments verl passes that are not reward options.
_VERL_PASSTHROUGH = frozenset({"tokenizer", "return_dict", "reward_router_address", "reward_model_tokenizer"})


def _new_scorer(options: dict[str, Any]) -> _Scorer:
    options = {k: v for k, v in options.items() if k not in _VERL_PASSTHROUGH}
    names = [f.name for f in fields(RewardConfig)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"unknown TaoSR1 reward option(s) {unknown}; options are {names}")
    cfg = RewardConfig(**options)
    return _Scorer(cfg, get_schema(cfg.schema))


# verl calls compute_score once per response with the same keyword arguments: building RewardConfig (coercion
# and checks) per call costs about 50 times the scoring itself, so scorers are cached by those arguments as
# given (bench/bench_reward.py, "with verl's reward_kwargs" line). A bounded LRU: a run uses one or two sets.
@functools.lru_cache(maxsize=64)
def _cached_scorer(kwargs: frozenset[tuple[str, Any]]) -> _Scorer:
    return _new_scorer(dict(kwargs))


# No options (the default reward, bench/bench_reward.py's table): not even a cache key to build.
_DEFAULT = _new_scorer({})


def get_scorer(**reward_kwargs: Any) -> Callable[[Any, Any], dict[str, float | int]]:
    """A ``(solution_str, ground_truth) -> dict`` scorer for the given options (cached per options; an
    option value that cannot be hashed builds an uncached one). Keywords verl adds on its own are ignored."""
    if not reward_kwargs:
        return _DEFAULT
    try:
        return _cached_scorer(frozenset(reward_kwargs.items()))
    except TypeError:  # an unhashable option value
        return _new_scorer(reward_kwargs)


def compute_score(
    data_source: str | None,
    solution_str: Any,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float | int]:
    """Score one response of a query-item relevance prompt (verl ``custom_reward_function`` signature).

    Args:
        data_source: dataset name of the row (unused; any value is accepted).
        solution_str: the decoded response. Untrusted: any text (or even a non-string) is scored, never
            raised on, in time linear in its length.
        ground_truth: the gold label, as its label string (``"4"``), its int level (``4``), or a name or
            alias of the schema (``"Excellent"``).
        extra_info: the row's ``extra_info`` (unused).
        **kwargs: reward options, see :class:`RewardConfig` (``format``, ``correct_reward``,
            ``wrong_reward``, ``malformed_penalty``, ``partial_credit``, ``false_positive_penalty``,
            ``schema``). Keywords verl adds on its own (e.g. ``tokenizer``) are ignored.

    Returns:
        A dict with always the same numeric keys: ``score`` (the reward), ``acc`` (1 if the label is
        correct), ``format_ok`` (1 if well-formed), ``pred`` (predicted level, 0 if none), ``gold`` (gold
        level), ``false_positive`` (1 if predicted Good while gold is Mid/Bad).

    Raises:
        ValueError: if ``ground_truth`` is not a label of the schema (a data bug must not be scored).

    Example:
        >>> compute_score("synthetic", "4\\n<think>exact match</think>", "4")["score"]
        1.0
        >>> compute_score("synthetic", "3\\n<think>colour differs</think>", 4)["acc"]
        0
        >>> compute_score("synthetic", "Label: 4", "4")["score"]
        -1.0
    """
    if not kwargs:
        return _DEFAULT(solution_str, ground_truth)
    try:
        scorer = _cached_scorer(frozenset(kwargs.items()))
    except TypeError:  # an unhashable option value
        scorer = _new_scorer(kwargs)
    return scorer(solution_str, ground_truth)


def score_batch(
    solutions: Sequence[Any], ground_truths: Sequence[Any], **reward_kwargs: Any
) -> list[dict[str, float | int]]:
    """Score many responses with one set of options (pass@N grading, evaluation)."""
    if len(solutions) != len(ground_truths):
        raise ValueError(f"{len(solutions)} solutions but {len(ground_truths)} ground truths")
    scorer = get_scorer(**reward_kwargs)
    return [scorer(s, g) for s, g in zip(solutions, ground_truths, strict=True)]


def _completion_text(completion: Any) -> Any:
    # TRL passes plain strings for standard datasets and a list of messages for conversational ones.
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return completion[-1].get("content")
    return completion


def _gold_from_row(i: int, kwargs: dict[str, Any]) -> Any:
    if "ground_truth" in kwargs:
        return kwargs["ground_truth"][i]
    if "reward_model" in kwargs:
        from taosr1_verl.rl_rows import ground_truth

        return ground_truth({"reward_model": kwargs["reward_model"][i]}, f"TRL batch row {i}")
    if "label" in kwargs:
        return kwargs["label"][i]
    raise KeyError("TaoSR1 TRL reward needs a `ground_truth`, `reward_model` or `label` dataset column")


def make_trl_reward(**reward_kwargs: Any) -> Callable[..., list[float]]:
    """A reward function for TRL's ``GRPOTrainer`` (``reward_funcs=[make_trl_reward()]``).

    TRL calls it with ``prompts``, ``completions`` and every dataset column as lists; the gold label is
    read from the ``ground_truth`` column, else ``reward_model["ground_truth"]`` (verl's layout, so the
    same parquet feeds both), else ``label``.

    Example:
        >>> reward = make_trl_reward()
        >>> reward(prompts=["q"], completions=["2\\n<think>wrong category</think>"], ground_truth=["2"])
        [1.0]
    """
    scorer = get_scorer(**reward_kwargs)

    def taosr1_reward(prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any) -> list[float]:
        return [float(scorer(_completion_text(c), _gold_from_row(i, kwargs))["score"]) for i, c in enumerate(completions)]

    return taosr1_reward
