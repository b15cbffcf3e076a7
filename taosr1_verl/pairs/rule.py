"""The TaoSR1 pass@N pair rule, with one accounted outcome per prompt.

Given the N graded samples of one prompt (graded by :mod:`taosr1_verl.rewards`, the same function GRPO
uses):

* some correct, some wrong -> ``paired_self``: chosen = one of the model's correct answers, rejected = one
  of its wrong (or malformed) answers;
* none correct -> ``paired_teacher`` when the teacher's answer for the prompt exists and is itself graded
  correct, chosen = teacher, rejected = a wrong answer; otherwise ``skipped_no_teacher`` (no teacher answer)
  or ``skipped_teacher_wrong`` (the teacher's answer fails the same grader: we never teach a wrong label);
* all correct -> ``skipped_all_correct`` (no preference signal);
* no samples at all -> ``skipped_no_samples``.

Every prompt ends in exactly one of :data:`OUTCOMES`; :class:`PairingReport` counts them and its counts
sum to the number of prompts. Pure Python (no framework import).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

OUTCOMES: tuple[str, ...] = (
    "paired_self",
    "paired_teacher",
    "skipped_all_correct",
    "skipped_no_teacher",
    "skipped_teacher_wrong",
    "skipped_no_samples",
)
"""Every prompt ends in exactly one of these."""

ChosenPolicy = Literal["shortest", "longest", "first", "random"]
RejectedPolicy = Literal["confident", "farthest", "malformed", "first", "random"]
CHOSEN_POLICIES: tuple[str, ...] = ("shortest", "longest", "first", "random")
REJECTED_POLICIES: tuple[str, ...] = ("confident", "farthest", "malformed", "first", "random")


@dataclass(frozen=True)
class PairConfig:
    """How chosen and rejected answers are picked."""

    chosen: ChosenPolicy = "shortest"
    """Which correct answer becomes ``chosen``: ``shortest`` (concise well-formed reasoning; the default),
    ``longest``, ``first`` (sample order) or ``random``. Correct answers are always well-formed."""
    rejected: RejectedPolicy = "confident"
    """Which wrong answer becomes ``rejected``: ``confident`` (a well-formed answer with the wrong label the
    model produced most often: its confident mistake; ties go to the label farthest from gold), ``farthest``
    (largest ordinal distance from gold), ``malformed`` (a malformed answer first, to teach the format),
    ``first`` or ``random``. Policies that prefer well-formed answers fall back to malformed ones."""
    pairs_per_prompt: int = 1
    """At most this many distinct (chosen, rejected) pairs per prompt, best-ranked combinations first."""
    seed: int = 0
    """Seed of the ``random`` policies; each prompt draws from its own stream (seed, index), so the result
    does not depend on processing order or on resuming."""
    use_teacher: bool = True
    """Use the teacher's answer as ``chosen`` when no sample is correct."""

    def __post_init__(self) -> None:
        if self.chosen not in CHOSEN_POLICIES:
            raise ValueError(f"PairConfig.chosen must be one of {CHOSEN_POLICIES}, got {self.chosen!r}")
        if self.rejected not in REJECTED_POLICIES:
            raise ValueError(f"PairConfig.rejected must be one of {REJECTED_POLICIES}, got {self.rejected!r}")
        if self.pairs_per_prompt < 1:
            raise ValueError(f"PairConfig.pairs_per_prompt must be >= 1, got {self.pairs_per_prompt}")


@dataclass
class PromptGroup:
    """The graded samples of one prompt. ``grades[i]`` is :func:`taosr1_verl.rewards.compute_score`'s dict
    for ``responses[i]``."""

    index: int
    """The dataset index (``extra_info.index`` of the RL row)."""
    prompt: list[dict[str, str]]
    """The chat messages the samples answer (system, user)."""
    ground_truth: Any
    responses: list[str]
    grades: list[Mapping[str, Any]]
    teacher: str | None = None
    """The teacher's answer for this prompt, if the teacher file has one."""

    def __post_init__(self) -> None:
        if len(self.responses) != len(self.grades):
            raise ValueError(f"prompt {self.index}: {len(self.responses)} responses but {len(self.grades)} grades")

    @property
    def n(self) -> int:
        return len(self.responses)

    @property
    def correct(self) -> int:
        return sum(int(g["acc"]) for g in self.grades)


@dataclass
class Decision:
    """What the rule decided for one prompt."""

    index: int
    outcome: str
    pairs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PairingReport:
    """Outcome counts over a run; ``sum(outcomes.values()) == prompts`` always holds."""

    prompts: int = 0
    pairs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    skipped_indices: dict[str, list[int]] = field(default_factory=dict)
    """Indices of skipped prompts per outcome (``skipped_no_teacher`` is the list to send to a teacher)."""

    def add(self, d: Decision) -> None:
        self.prompts += 1
        self.pairs += len(d.pairs)
        self.outcomes[d.outcome] += 1
        if d.outcome.startswith("skipped_"):
            self.skipped_indices.setdefault(d.outcome, []).append(d.index)

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "pairs": self.pairs,
            "outcomes": {o: int(self.outcomes.get(o, 0)) for o in OUTCOMES},
            "skipped_indices": {k: list(v) for k, v in sorted(self.skipped_indices.items())},
        }


def _rank_chosen(cands: list[int], texts: Sequence[str], policy: str, rng: random.Random) -> list[int]:
    if policy == "shortest":
        return sorted(cands, key=lambda i: (len(texts[i]), i))
    if policy == "longest":
        return sorted(cands, key=lambda i: (-len(texts[i]), i))
    if policy == "random":
        out = list(cands)
        rng.shuffle(out)
        return out
    return list(cands)


def _rank_rejected(
    cands: list[int], grades: Sequence[Mapping[str, Any]], policy: str, rng: random.Random
) -> list[int]:
    if policy == "random":
        out = list(cands)
        rng.shuffle(out)
        return out
    if policy == "first":
        return list(cands)
    wrong_freq = Counter(int(grades[i]["pred"]) for i in cands if grades[i]["format_ok"])

    def dist(i: int) -> int:
        return abs(int(grades[i]["pred"]) - int(grades[i]["gold"]))

    if policy == "malformed":
        return sorted(cands, key=lambda i: (int(grades[i]["format_ok"]), -wrong_freq[int(grades[i]["pred"])], -dist(i), i))
    if policy == "farthest":
        return sorted(cands, key=lambda i: (1 - int(grades[i]["format_ok"]), -dist(i), i))
    # confident: the model's most frequent well-formed mistake first.
    return sorted(cands, key=lambda i: (1 - int(grades[i]["format_ok"]), -wrong_freq[int(grades[i]["pred"])], -dist(i), i))


def _dedupe(order: list[int], texts: Sequence[str]) -> list[int]:
    seen: set[str] = set()
    out = []
    for i in order:
        if texts[i] not in seen:
            seen.add(texts[i])
            out.append(i)
    return out


def _combine(n_chosen: int, n_rejected: int, k: int) -> list[tuple[int, int]]:
    # Best-ranked combinations first: by rank sum, then by the rejected rank.
    combos = sorted(((a, b) for a in range(n_chosen) for b in range(n_rejected)), key=lambda ab: (ab[0] + ab[1], ab[1]))
    return combos[:k]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def decide(
    group: PromptGroup,
    config: PairConfig | None = None,
    grade: Callable[[str, Any], Mapping[str, Any]] | None = None,
) -> Decision:
    """Apply the pair rule to one prompt.

    Args:
        group: the prompt's graded samples (and teacher answer, if any).
        config: selection policies; defaults to :class:`PairConfig`.
        grade: the reward's ``(response, ground_truth) -> dict`` scorer, used to check the teacher's answer
            (pass :func:`taosr1_verl.rewards.get_scorer` with the options used to grade the samples).
            Without it a teacher answer is trusted as correct.

    Returns:
        A :class:`Decision` whose ``pairs`` are TRL conversational preference rows
        (``prompt``, ``chosen``, ``rejected``) plus provenance columns.

    Example:
        >>> from taosr1_verl.rewards import score_batch
        >>> r = ["4\\n<think>fits</think>", "2\\n<think>wrong colour</think>"]
        >>> g = PromptGroup(0, [{"role": "user", "content": "q"}], "4", r, score_batch(r, ["4", "4"]))
        >>> d = decide(g)
        >>> d.outcome, d.pairs[0]["chosen"][0]["content"][0], d.pairs[0]["rejected"][0]["content"][0]
        ('paired_self', '4', '2')
    """
    cfg = config or PairConfig()
    if group.n == 0:
        return Decision(group.index, "skipped_no_samples")
    texts = [r if isinstance(r, str) else str(r) for r in group.responses]
    good = [i for i, g in enumerate(group.grades) if int(g["acc"]) == 1]
    bad = [i for i, g in enumerate(group.grades) if int(g["acc"]) != 1]
    if not bad:
        return Decision(group.index, "skipped_all_correct")
    rng = random.Random(f"{cfg.seed}:{group.index}")
    rejected = _dedupe(_rank_rejected(bad, group.grades, cfg.rejected, rng), texts)
    gold = int(group.grades[0]["gold"])
    if good:
        chosen_texts = [texts[i] for i in _dedupe(_rank_chosen(good, texts, cfg.chosen, rng), texts)]
        chosen_pred = [gold] * len(chosen_texts)
        source, outcome = "self", "paired_self"
    else:
        teacher = group.teacher if cfg.use_teacher else None
        if teacher is None or not isinstance(teacher, str) or not teacher.strip():
            return Decision(group.index, "skipped_no_teacher")
        if grade is not None and int(grade(teacher, group.ground_truth)["acc"]) != 1:
            return Decision(group.index, "skipped_teacher_wrong")
        chosen_texts, chosen_pred = [teacher], [gold]
        source, outcome = "teacher", "paired_teacher"
    pairs = []
    for a, b in _combine(len(chosen_texts), len(rejected), cfg.pairs_per_prompt):
        j = rejected[b]
        rg = group.grades[j]
        pairs.append(
            {
                "prompt": group.prompt,
                "chosen": _assistant(chosen_texts[a]),
                "rejected": _assistant(texts[j]),
                "index": group.index,
                "gold": gold,
                "chosen_source": source,
                "chosen_pred": chosen_pred[a],
                "rejected_pred": int(rg["pred"]),
                "rejected_format_ok": int(rg["format_ok"]),
                "n": group.n,
                "correct": group.correct,
            }
        )
    return Decision(group.index, outcome, pairs)


def build_pairs(
    groups: Iterable[PromptGroup],
    config: PairConfig | None = None,
    grade: Callable[[str, Any], Mapping[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], PairingReport]:
    """Apply :func:`decide` to every prompt; returns all pairs and the outcome report.

    Example:
        >>> from taosr1_verl.rewards import score_batch
        >>> r = ["4\\n<think>fits</think>"] * 2
        >>> pairs, rep = build_pairs([PromptGroup(7, [], "4", r, score_batch(r, ["4", "4"]))])
        >>> pairs, rep.outcomes["skipped_all_correct"]
        ([], 1)
    """
    report = PairingReport()
    pairs: list[dict[str, Any]] = []
    seen: set[int] = set()
    for g in groups:
        if g.index in seen:
            raise ValueError(f"dataset index {g.index} appears twice; every prompt needs a unique extra_info.index")
        seen.add(g.index)
        d = decide(g, config, grade)
        report.add(d)
        pairs.extend(d.pairs)
    return pairs, report
