"""Grading throughput: items/s of :func:`vlmdiag.measure.grading.grade` on responses in the formats
real VLMs write, by kind (math-verify is the slow path).

Usage::

    .venv/bin/python bench/bench_grading.py            # 400 responses per kind, prints
    .venv/bin/python bench/bench_grading.py --n 2000 --write   # replaces "## Grading" in RESULTS.md
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import load_average, machine, write_section  # noqa: E402

from vlmdiag.measure.grading import grade  # noqa: E402

HEADING = "## Grading"


def _reasoning(rng: random.Random) -> str:
    words = "so the image shows apples let me count again first then total is area of the triangle".split()
    return " ".join(rng.choice(words) if rng.random() < 0.7 else str(rng.randint(0, 999)) for _ in range(rng.randint(20, 200)))


def cases(kind: str, n: int, seed: int = 0) -> list[tuple[str, str, tuple | None, bool]]:
    """``n`` (response, gold, choices, hit_budget) of one kind; about half are wrong."""
    rng = random.Random(f"{kind}:{seed}")
    out = []
    for _ in range(n):
        gold = rng.randint(0, 10**6)
        said = gold if rng.random() < 0.5 else gold + rng.randint(1, 9)
        r = _reasoning(rng)
        if kind == "organism":
            out.append((f"<think>{said % 10}+2={said % 10 + 2}</think><answer>{said % 10 + 2}</answer>", str(gold % 10 + 2), None, False))
        elif kind == "r1 numbers":
            template = rng.choice(["<think>{r}</think>\n<answer>{a:,}</answer>", "{r}\n</think>\n\n**Final Answer:** {a} cm",
                                   "<think>{r}</think> The answer is {a}.", "{r} so $\\boxed{{{a}}}$."])
            out.append((template.format(r=r, a=said), str(gold), None, False))
        elif kind == "multiple choice":
            choices = tuple(f"option {i} text" for i in range(4))
            letter = "ABCD"[said % 4]
            template = rng.choice(["<think>{r}</think><answer>{L}</answer>", "The answer is ({L}).", "{L}. {T}", "Answer: {L}"])
            out.append((template.format(r=r, L=letter, T=choices[said % 4]), "ABCD"[gold % 4], choices, False))
        elif kind == "fractions":
            p, q = gold % 17 + 1, said % 13 + 2
            out.append((f"<think>{r}</think>\n<answer>$\\frac{{{p}}}{{{q}}}$</answer>", f"{p / (gold % 13 + 2):.6g}", None, False))
        elif kind == "latex (math-verify)":
            k = gold % 9 + 2
            answer = f"{k}\\sqrt{{{k}}}" if said == gold else f"\\sqrt{{{k + 1}}}"
            out.append((f"<think>{r}</think>\n<answer>${answer}$</answer>", f"\\sqrt{{{k ** 3}}}", None, False))
        elif kind == "truncated":
            out.append((f"<think>{r}", str(gold), None, True))
        else:
            raise ValueError(kind)
    return out


KINDS = ("organism", "r1 numbers", "multiple choice", "fractions", "latex (math-verify)", "truncated")


def run(n: int) -> list[tuple[str, int, float, float]]:
    grade("<answer>\\sqrt{2}</answer>", "\\frac{\\sqrt{8}}{2}")  # import and warm math-verify and sympy outside the timing
    rows = []
    for kind in KINDS:
        items = cases(kind, n)
        start = time.perf_counter()
        correct = sum(grade(resp, gold, choices=choices, hit_budget=hit).correct for resp, gold, choices, hit in items)
        seconds = time.perf_counter() - start
        rows.append((kind, n, n / seconds, correct / n))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400, help="responses per kind")
    parser.add_argument("--write", action="store_true", help=f'replace "{HEADING}" in bench/RESULTS.md')
    args = parser.parse_args(argv)
    load_before = load_average()
    rows = run(args.n)
    table = ["| responses | n | items/s | share correct |", "|---|---:|---:|---:|"]
    table += [f"| {kind} | {n} | {rate:,.0f} | {share:.2f} |" for kind, n, rate, share in rows]
    text = "\n".join([
        HEADING, "",
        f"`bench/bench_grading.py --n {args.n}`: `grade()` (extraction, equivalence, truncation) on one core, "
        f"single process. Machine: {machine()}; load average before {load_before}, after {load_average()}.",
        "", *table, "",
        "Reasoning traces are 20–200 words. Fractions (`\\frac{p}{q}` vs a decimal gold) are read "
        "without sympy; other LaTeX (`k\\sqrt{k}` vs `\\sqrt{k^3}`) goes through math-verify, the slow path. "
        "The organism's `<think>…</think><answer>…</answer>` answers never reach it.",
    ])
    print(text)
    if args.write:
        write_section(HEADING, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
