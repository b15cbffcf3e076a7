"""Reward cost per call: TaoSR1 compute_score vs verl's gsm8k and math_dapo scorers on equal-length text.

Run: .venv/bin/python bench/bench_reward.py   (single-threaded Python; pin it with `taskset -c 0` for
stable numbers). Prints median microseconds per call over repeats, and the ratio to ours.
Targets (issue 2): <= 2 us per 1 KB call, <= 5 ms for a 1 MB malformed response.
"""

from __future__ import annotations

import argparse
import statistics
import timeit


def make_texts(size: int) -> dict[str, str]:
    body = ("query asks for a red oak table; item is an oak table in red; category matches; "
            "attributes match; verdict: Excellent. ")
    reasoning = (body * (size // len(body) + 1))[: size - 40]
    good = f"4\n<think>\n{reasoning}\n</think>"
    malformed = f"The answer is 4 because {reasoning}"[:size]
    # gsm8k/math_dapo read a final answer marker; give them one so they do their full work too.
    math_good = f"{reasoning} #### 4"[-size:]
    return {"well-formed": good, "malformed": malformed, "math-style": math_good}


def median_us(fn, number: int, repeat: int) -> float:
    times = timeit.repeat(fn, number=number, repeat=repeat)
    return statistics.median(times) / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    from verl.utils.reward_score import gsm8k, math_dapo

    from taosr1_verl.rewards import compute_score

    rows = []
    for size in (1024, 10 * 1024):
        texts = make_texts(size)
        number = 20000 if size <= 1024 else 5000
        ours_good = median_us(lambda t=texts["well-formed"]: compute_score("s", t, "4"), number, args.repeat)
        ours_bad = median_us(lambda t=texts["malformed"]: compute_score("s", t, "4"), number, args.repeat)
        g = median_us(lambda t=texts["math-style"]: gsm8k.compute_score(t, "4"), number, args.repeat)
        m = median_us(lambda t=texts["math-style"]: math_dapo.compute_score(t, "4"), max(number // 20, 50), args.repeat)
        rows.append((f"{size // 1024} KB", ours_good, ours_bad, g, m))
    big = "x" * (1 << 20) + "<think>" * 3
    ours_big = median_us(lambda: compute_score("s", big, "4"), 20, args.repeat)
    # As verl's reward loop calls it: the recipe's reward_kwargs and verl's own keywords on every call.
    verl_kwargs = {"format": "post_cot", "malformed_penalty": -1.0, "tokenizer": None}
    good_1k = make_texts(1024)["well-formed"]
    ours_kw = median_us(lambda: compute_score("s", good_1k, "4", **verl_kwargs), 20000, args.repeat)

    print("| response | taosr1 well-formed (us) | taosr1 malformed (us) | verl gsm8k (us) | verl math_dapo (us) "
          "| gsm8k / taosr1 | math_dapo / taosr1 |")
    print("|---|---|---|---|---|---|---|")
    for name, og, ob, g, m in rows:
        print(f"| {name} | {og:.2f} | {ob:.2f} | {g:.2f} | {m:.2f} | {g / og:.2f}x | {m / og:.1f}x |")
    print(f"\n1 MB malformed response: taosr1 {ours_big / 1000:.3f} ms per call (target <= 5 ms)")
    print(f"1 KB well-formed: {rows[0][1]:.2f} us per call (target <= 2 us)")
    print(f"1 KB well-formed with verl's reward_kwargs: {ours_kw:.2f} us per call (scorer cached per options)")


if __name__ == "__main__":
    main()
