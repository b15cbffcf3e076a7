"""What every first-token backend shares: prompt rendering to token ids, label token ids, the shared
prefix of a group of prompts, and the ``score_*`` entry points.

A backend implements one method, :meth:`FirstTokenScorer._score_group`: label logits (or log-probs; any
per-row shift is fine) of the label tokens at the first response position for a group of prompts that
share a token prefix. Everything else (rendering, checks, grouping, softmax over the label tokens) is here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from taosr1_verl.schema import LabelSchema, get_schema
from taosr1_verl.scoring.cumpt import softmax

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]


def special_token_texts(tokenizer: Any) -> tuple[str, ...]:
    """The text of every special token of ``tokenizer`` (``<|im_end|>``, ``</s>``, ...), longest first."""
    texts = set(getattr(tokenizer, "all_special_tokens", ()) or ())
    for tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(tok, "special", False):
            texts.add(str(tok.content))
    return tuple(sorted((t for t in texts if len(t) > 1), key=len, reverse=True))


def defuse_user_turns(tokenizer: Any, messages: Messages) -> Messages:
    """``messages`` with user turns made safe for ``tokenizer``: :func:`taosr1_verl.prompts.defuse_control_text`
    plus a zero-width space inside any of the tokenizer's own special tokens. Prompts built by
    :func:`~taosr1_verl.prompts.build_messages` are already safe; this covers rows from elsewhere (an older
    parquet, another tool). System and assistant turns are ours or the model's and are left alone."""
    from taosr1_verl.prompts import ZERO_WIDTH_SPACE, defuse_control_text

    specials = special_token_texts(tokenizer)
    out = []
    for m in messages:
        content = m.get("content")
        if m.get("role") == "user" and isinstance(content, str):
            content = defuse_control_text(content)
            for tok in specials:
                if tok in content:
                    content = content.replace(tok, tok[0] + ZERO_WIDTH_SPACE + tok[1:])
            m = {**m, "content": content}
        out.append(m)
    return out


def render_prompt_ids(tokenizer: Any, messages: Messages) -> list[int]:
    """Token ids of a chat prompt followed by the assistant turn opener (``add_generation_prompt=True``).

    Rendered to text first and then encoded without extra special tokens, so the ids are exactly what
    the chat template writes (no doubled BOS). User text never becomes special tokens
    (:func:`defuse_user_turns`).
    """
    text = tokenizer.apply_chat_template(defuse_user_turns(tokenizer, messages), tokenize=False,
                                         add_generation_prompt=True)
    return list(tokenizer.encode(text, add_special_tokens=False))


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common token prefix of ``seqs`` (0 for none or an empty list).

    Example:
        >>> common_prefix_len([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]])
        2
    """
    if not seqs:
        return 0
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
        if n == 0:
            break
    return n


def label_ids_in_order(schema: LabelSchema, tokenizer: Any) -> list[int]:
    """Token id of each label, in ``schema.levels`` order (raises when a label is not one token)."""
    by_level = schema.label_token_ids(tokenizer)
    return [by_level[lv.level] for lv in schema.levels]


@dataclass(frozen=True)
class ScoredItem:
    """One scored (query, item) pair."""

    probs: tuple[float, ...]
    """Label probabilities in ``schema.levels`` order."""
    level: int
    tier: str


class FirstTokenScorer:
    """Base class: label probabilities from the first generated position of a chat prompt.

    Args:
        tokenizer: a Hugging Face tokenizer with a chat template.
        schema: label schema (preset name or object); each label must be one token of ``tokenizer``.
        max_prompt_tokens: prompts longer than this raise ``ValueError`` naming the row (default: unbounded).
    """

    name = "base"

    def __init__(self, tokenizer: Any, schema: LabelSchema | str | None = None,
                 max_prompt_tokens: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.schema = get_schema(schema)
        self.label_ids = label_ids_in_order(self.schema, tokenizer)
        self.max_prompt_tokens = max_prompt_tokens

    # ---- the one method a backend implements -------------------------------------------------------
    def _score_group(self, seqs: list[list[int]], prefix_len: int) -> np.ndarray:
        """``(len(seqs), L)`` label logits or log-probs; ``prefix_len`` tokens are shared by all seqs."""
        raise NotImplementedError

    def _score_groups(self, groups: list[list[list[int]]], prefix_lens: list[int]) -> Iterator[np.ndarray]:
        """:meth:`_score_group` of each group, in order. A backend that can overlap groups (an endpoint with
        its own prefix cache) overrides this to send them together."""
        for seqs, prefix_len in zip(groups, prefix_lens, strict=True):
            yield self._score_group(seqs, prefix_len)

    # ---- entry points ---------------------------------------------------------------------------------
    def render(self, prompts: Iterable[Messages]) -> list[list[int]]:
        return [render_prompt_ids(self.tokenizer, m) for m in prompts]

    def check_ids(self, seqs: Sequence[Sequence[int]], where: Sequence[str] | None = None,
                  hint: str = "shorten the item text (PromptConfig budgets)") -> None:
        """Refuse an empty prompt, or one longer than ``max_prompt_tokens``, naming its row: ``where[i]``
        (e.g. ``file:line``), else ``row i``; ``hint`` says what to do about a long one."""
        for i, s in enumerate(seqs):
            if len(s) == 0:
                raise ValueError(f"{where[i] if where is not None else f'row {i}'}: empty prompt")
            if self.max_prompt_tokens is not None and len(s) > self.max_prompt_tokens:
                raise ValueError(f"{where[i] if where is not None else f'row {i}'}: prompt has {len(s)} tokens, "
                                 f"more than the model's {self.max_prompt_tokens}; {hint}")

    def score_ids(self, seqs: Sequence[Sequence[int]], groups: Sequence[Any] | None = None,
                  progress: bool = False) -> np.ndarray:
        """Label probabilities ``(n, L)`` for token-id prompts.

        ``groups`` (one key per row, e.g. the query) tells which rows share a prefix: the shared prefix of
        a group is computed once from its tokens and reused where the backend can. Without ``groups`` the
        whole call is one group (the system prompt is still shared). Output rows follow input order.
        """
        seqs = [list(map(int, s)) for s in seqs]
        self.check_ids(seqs)
        out = np.zeros((len(seqs), len(self.label_ids)), dtype=np.float64)
        if not seqs:
            return out
        keys = [0] * len(seqs) if groups is None else list(groups)
        if len(keys) != len(seqs):
            raise ValueError(f"{len(seqs)} prompts but {len(keys)} group keys")
        order: dict[Any, list[int]] = {}
        for i, k in enumerate(keys):
            order.setdefault(k, []).append(i)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(seqs), desc=f"scoring ({self.name})", unit="item")
        row_groups = list(order.values())
        groups_ids = [[seqs[i] for i in rows] for rows in row_groups]
        # Leave at least one token per prompt outside the prefix: its position gives the logits.
        prefixes = [min(common_prefix_len(g), min(len(s) for s in g) - 1) for g in groups_ids]
        for rows, logits in zip(row_groups, self._score_groups(groups_ids, prefixes), strict=True):
            out[rows] = softmax(np.asarray(logits, dtype=np.float64))
            if bar is not None:
                bar.update(len(rows))
        if bar is not None:
            bar.close()
        return out

    def score_messages(self, prompts: Sequence[Messages], groups: Sequence[Any] | None = None,
                       progress: bool = False) -> np.ndarray:
        """Label probabilities for chat prompts (e.g. the ``prompt`` column of an RL/eval parquet)."""
        return self.score_ids(self.render(prompts), groups=groups, progress=progress)

    def score_items(self, query: str, items: Sequence[Mapping[str, Any]], *, fmt: str = "post_cot",
                    prompt_config: Any = None, progress: bool = False) -> np.ndarray:
        """Label probabilities of each item (``title`` required; ``attributes``, ``description``) for one query.

        Prompts come from :func:`taosr1_verl.prompts.build_messages`, whose query part comes first, so the
        items share a long prefix.
        """
        from taosr1_verl.prompts import build_messages

        msgs = []
        for i, it in enumerate(items):
            try:
                msgs.append(build_messages(query, it.get("title", ""), it.get("attributes"), it.get("description"),
                                           schema=self.schema, fmt=fmt, config=prompt_config))
            except ValueError as e:
                raise ValueError(f"item {i}: {e}") from None
        return self.score_messages(msgs, progress=progress)

    @classmethod
    def open(cls, model: str, schema: LabelSchema | str | None = None, *, base_url: str | None = None,
             batch_size: int = 32, block_size: int | None = None, **kwargs: Any) -> FirstTokenScorer:
        """Build the backend from the options ``taosr1 score``/``eval`` give every backend
        (:func:`~taosr1_verl.scoring.registry.make_scorer`): each takes the ones it uses (``batch_size``: HF and
        endpoint, ``block_size``: vLLM, ``base_url``: endpoint) and passes ``kwargs`` to its constructor."""
        raise NotImplementedError(f"{cls.__name__} cannot be built by name")

    def close(self) -> None:
        """Free the engine (backends with processes override this)."""

    def __enter__(self) -> FirstTokenScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
