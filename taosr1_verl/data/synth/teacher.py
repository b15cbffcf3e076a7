"""The rule-based teacher: a five-step, rule-citing reasoning in the post-CoT format, for synthetic pairs.

Steps (TaoSR1's): query understanding, item understanding, category match, attribute match, verdict.
The verdict is the judge's level, so every answer scores 1.0 with :func:`taosr1_verl.rewards.compute_score`
against the pair's gold label. Kept short on purpose: tiny models learn the rules from this text.
Its errors-made-on-purpose twin is :mod:`taosr1_verl.data.synth.teacher_errors`; the ablation
(``taosr1 ablate``) uses this perfect one as the "stronger model" whose answer DPO chooses when no pass@N
sample is right.
"""

from __future__ import annotations

import re

from taosr1_verl.data.pairs import Pair, QuerySpec
from taosr1_verl.data.synth.catalog import item_facts
from taosr1_verl.data.synth.kb import RuleKB, judge, load_rules
from taosr1_verl.response import ResponseFormat, format_response
from taosr1_verl.schema import TAOSR1

_CATEGORY_RULES = ("R01", "R02", "R03")


def describe_query(spec: QuerySpec) -> str:
    """``"sofa; colour blue; not leather; max $400"``: the constraints a query states."""
    parts = [spec.category]
    parts += [f"{a} {v}" for a, v in spec.required]
    parts += [f"not {v}" for _, v in spec.excluded]
    if spec.max_price is not None:
        parts.append(f"max ${spec.max_price}")
    if spec.alt_brand is not None:
        parts.append(f"not brand {spec.alt_brand}")
    return "; ".join(parts)


def _attribute_checks(spec: QuerySpec, attrs: dict[str, str], price: float | None, brand: str, kb: RuleKB) -> str:
    checks: list[str] = []
    for a, want in spec.required:
        have = attrs.get(a)
        if have is None:
            checks.append(f"{a} unknown [R08]")
        elif have == want:
            checks.append(f"{a} {have} ok")
        else:
            checks.append(f"{a} {have} not {want} [{'R04' if a in kb.key_attributes else 'R07'}]")
    for a, banned in spec.excluded:
        have = attrs.get(a)
        if have is None:
            checks.append(f"{a} unknown [R08]")
        elif have == banned:
            checks.append(f"{a} is {banned} [R05]")
        else:
            checks.append(f"{a} {have} ok")
    if spec.max_price is not None:
        if price is None:
            checks.append("price unknown [R08]")
        elif price > spec.max_price:
            checks.append(f"${price:g} over ${spec.max_price} [R06]")
        else:
            checks.append(f"${price:g} ok")
    if spec.alt_brand is not None:
        checks.append(f"brand is {brand} [R09]" if brand == spec.alt_brand else f"brand {brand} ok")
    return "; ".join(checks) if checks else "none asked"


def render_reasoning(spec: QuerySpec, category: str, attrs: dict[str, str], price: float | None, brand: str,
                     kb: RuleKB, verdict: int | None = None) -> tuple[int, str]:
    """``(level, five-step reasoning)`` for what the teacher *reads*: the query's constraints and the item's facts.

    The judge decides the level from those facts, so the reasoning always supports it; the imperfect teacher
    (:mod:`taosr1_verl.data.synth.teacher_errors`) passes misread facts here, and its verdict follows them.
    ``verdict`` overrides the level named in step 5 and returned (discriminative hallucination: the findings
    are left as the judge wrote them).
    """
    level, findings = judge(spec, category, attrs, price, brand, kb)
    item = "; ".join([category, f"brand {brand}", *(f"{a} {v}" for a, v in attrs.items()),
                      *([f"${price:g}"] if price is not None else [])])
    cat = next((f for f in findings if f.rule in _CATEGORY_RULES), None)
    cat_line = f"{cat.note} [{cat.rule}]" if cat else f"{category} ok"
    attr_line = "skipped, other family" if cat is not None and cat.rule == "R01" else _attribute_checks(
        spec, attrs, price, brand, kb)
    decisive = sorted({f.rule for f in findings if f.level == level})
    said = level if verdict is None else verdict
    name = TAOSR1.by_level(said).name
    text = (f"1. Query: {describe_query(spec)}.\n2. Item: {item}.\n3. Category: {cat_line}.\n"
            f"4. Attributes: {attr_line}.\n5. Verdict: {name} [{', '.join(decisive)}].")
    return said, text


def rule_reasoning(pair: Pair, kb: RuleKB | None = None) -> tuple[int, str]:
    """``(level, five-step reasoning)`` for a synthetic pair, decided by the rule KB."""
    if pair.spec is None:
        raise ValueError(f"pair {pair.pair_id}: the rule teacher needs a synthetic pair (spec is None)")
    kb = kb or load_rules()
    return render_reasoning(pair.spec, *item_facts(pair, kb), kb)


_CITATION = re.compile(r"\[(R\d\d(?:\s*,\s*R\d\d)*)\]")


def findings_level(reasoning: str | None, kb: RuleKB | None = None) -> int | None:
    """The level the reasoning's own findings imply, by the KB's rule (the lowest level cited wins; no rule
    cited: Excellent), read from the steps before the last ``Verdict``; ``None`` without a category step.

    This is the verdict the evidence supports, whatever the verdict line and the label say: a label more
    generous than it is TaoSR1's discriminative hallucination. Untrusted text: never raises; unknown rule
    ids are ignored.

    Example:
        >>> findings_level("3. Category: sofa ok.\\n4. Attributes: colour red not blue [R04].\\n5. Verdict: Related [R04].")
        2
        >>> findings_level("no steps here") is None
        True
    """
    if not isinstance(reasoning, str):
        return None
    kb = kb or load_rules()
    cut = reasoning.lower().rfind("verdict")
    body = reasoning if cut < 0 else reasoning[:cut]
    if "category" not in body.lower():
        return None
    levels = [kb.rules[r.strip()].level for m in _CITATION.finditer(body) for r in m.group(1).split(",")
              if r.strip() in kb.rules]
    return min(levels) if levels else kb.rules["R10"].level


def rule_teacher(pair: Pair, kb: RuleKB | None = None, fmt: ResponseFormat = "post_cot") -> str:
    """The teacher's full response for a synthetic pair: label first, then the reasoning (post-CoT).

    Example:
        >>> from taosr1_verl.data.synth.catalog import generate_synthetic
        >>> from taosr1_verl.rewards import compute_score
        >>> p = generate_synthetic(1, seed=3)[0]
        >>> compute_score("taosr1_synthetic", rule_teacher(p), str(p.level))["score"]
        1.0
    """
    level, text = rule_reasoning(pair, kb)
    return format_response(TAOSR1.by_level(level).label, text, fmt)
