"""Probe-suite throughput: items/s of the ``synthetic`` generator (drawing the scene, rendering the
image, the exact description) per kind and preset, of hashing what was drawn (the report's content
hash), and of reading the paper's vision-functionality pairs when the folder is there.

Usage::

    .venv/bin/python bench/bench_probes.py            # 48 items per kind, prints
    .venv/bin/python bench/bench_probes.py --n 200 --write   # replaces "## Probe suites" in RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import load_average, machine, publish  # noqa: E402

from vlmdiag.probes.suite import Drawn, open_suite  # noqa: E402

HEADING = "## Probe suites"
PAPER = Path(os.environ.get("VLMDIAG_VISION_FUNCTIONALITY", "/work/shared/data/vision_functionality"))
WHAT = ("vqa", "math_vqa", "text_math", "swap:ocr", "swap:counting", "swap:grounding", "swap:recognition")


def _draw(suite, what: str, n: int) -> Drawn:
    if what.startswith("swap:"):
        return suite.swap_pairs(what[5:], n, seed=0)
    return suite.ability_items(what, n, seed=0)


def run(n: int) -> list[tuple[str, str, int, float, float]]:
    rows = []
    for preset in ("real", "small"):
        for what in WHAT:
            suite = open_suite(f"synthetic:preset={preset}")
            start = time.perf_counter()
            drawn = _draw(suite, what, n)
            made = time.perf_counter() - start
            start = time.perf_counter()
            drawn.content_hash
            hashed = time.perf_counter() - start
            rows.append((f"synthetic:preset={preset}", what, len(drawn.items), len(drawn.items) / made,
                         len(drawn.items) / hashed))
    if PAPER.is_dir():
        suite = open_suite(f"paper:{PAPER}")
        for task in ("counting", "grounding", "ocr", "recognition"):
            start = time.perf_counter()
            drawn = suite.swap_pairs(task, 100, seed=0)
            made = time.perf_counter() - start
            start = time.perf_counter()
            drawn.content_hash
            hashed = time.perf_counter() - start
            rows.append(("paper (vision_functionality)", f"swap:{task}", len(drawn.items), len(drawn.items) / made,
                         len(drawn.items) / hashed))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=48, help="items per kind")
    parser.add_argument("--write", action="store_true", help=f'replace "{HEADING}" in bench/RESULTS.md')
    args = parser.parse_args(argv)
    load_before = load_average()
    rows = run(args.n)
    table = ["| suite | items | n | items/s drawn | items/s hashed |", "|---|---|---:|---:|---:|"]
    table += [f"| {suite} | {what} | {n} | {rate:,.0f} | {hashed:,.0f} |" for suite, what, n, rate, hashed in rows]
    text = "\n".join([
        HEADING, "",
        f"`bench/bench_probes.py --n {args.n}`: items handed out by a probe suite per second (one core, single "
        f"process), and the content hash of what was handed out (sha256 of the pixels). Machine: {machine()}; "
        f"load average before {load_before}, after {load_average()}.", "", *table, "",
        "`real` images are 448–896 px (0.2–0.8 Mpx, one or two per item); `small` 224–448 px. `text_math` "
        "has no image. A swap pair renders two images. Paper pairs are read from PNG files (first 100 lines per task).",
    ])
    publish(HEADING, text, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
