"""Set the imperfect teacher's two rates from the paper's SFT pass@k (run once; the result is committed).

``teacher_errors.yaml`` gives every error chance one of two rates: a *blind spot* (the phrasings a teacher
systematically misreads, and the generous call on same-family items) or a *slip* (everything else). A
student that imitates its teacher exactly answers each pair with the teacher's label distribution, so its
pass@k is ``mean(1 - P(wrong)^k)`` (:func:`implied_pass_at_k`). This script solves the two rates so that
the imitating student's pass@1 and pass@5 on the synthetic catalog are TaoSR1's SFT figures (67.38 and
81.73), and prints them with the share of wrong labels each error kind causes.

    .venv/bin/python scripts/calibrate_teacher_errors.py [--pairs 6000] [--seed 0]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from scipy.optimize import least_squares

from taosr1_verl.data.synth import generate_synthetic
from taosr1_verl.data.synth.teacher_errors import (
    HALLUCINATION_RULES,
    PHRASINGS,
    ImperfectTeacher,
    TeacherErrors,
    implied_pass_at_k,
)

PAPER_PASS_AT = {1: 0.6738, 5: 0.8173}
"""TaoSR1's SFT sampling accuracy at N = 1 and N = 5 (arXiv 2508.12365)."""
BLIND = {("negation", "non-"), ("price_limit", "max"), ("price_limit", "question"),
         ("brand_alternative", "other than"), ("hallucination", "R02"), ("hallucination", "R04")}
"""The blind spots: the least explicit phrasing of each long-tail constraint, a price limit inside a
question, and two generous calls: a same-family item of another category (R02) and an item whose colour or
material conflicts (R04, read as a minor difference) called Related."""


def errors_for(blind: float, slip: float) -> TeacherErrors:
    def rate(group: str, key: str) -> float:
        return blind if (group, key) in BLIND else slip

    return TeacherErrors(
        negation={p: rate("negation", p) for p in PHRASINGS["negation"]},
        price_limit={p: rate("price_limit", p) for p in PHRASINGS["price_limit"]},
        brand_alternative={p: rate("brand_alternative", p) for p in PHRASINGS["brand_alternative"]},
        close_variant=slip, misread_attribute=slip,
        hallucination={r: rate("hallucination", r) for r in HALLUCINATION_RULES},
        source="calibration",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pairs = generate_synthetic(args.pairs, seed=args.seed)

    def residual(x):
        got = implied_pass_at_k(ImperfectTeacher(errors_for(*x)), pairs, ks=tuple(PAPER_PASS_AT))
        return [got[k] - v for k, v in PAPER_PASS_AT.items()]

    fit = least_squares(residual, x0=[0.8, 0.15], bounds=([0.0, 0.0], [1.0, 1.0]), diff_step=1e-3)
    blind, slip = (round(float(v), 3) for v in fit.x)
    teacher = ImperfectTeacher(errors_for(blind, slip))
    curve = implied_pass_at_k(teacher, pairs)
    print(f"blind_spot {blind}  slip {slip}")
    print("imitating student's pass@k: " + "  ".join(f"@{k} {v:.4f}" for k, v in curve.items()),
          f"(paper: @1 {PAPER_PASS_AT[1]}, @5 {PAPER_PASS_AT[5]})")
    wrong: dict[str, float] = defaultdict(float)
    for p in pairs:
        a = teacher.answer(p)
        if a.level != a.gold:
            wrong[" + ".join(sorted({k.split(":")[0] for k in a.errors}))] += 1
    n = len(pairs)
    print(f"teacher's own labels wrong: {sum(wrong.values()) / n:.3f} of {n} pairs; by the errors behind them:")
    for k, v in sorted(wrong.items(), key=lambda kv: -kv[1]):
        print(f"  {k:60s} {v / n:.4f}")


if __name__ == "__main__":
    main()
