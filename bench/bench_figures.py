"""What the figures cost at the end of a run: CPU seconds and PNG bytes per claim figure, and the
HTML page, for the model organism's nine-claim report (tests/report/data/organism_report.json).

    python bench/bench_figures.py [--repeats 3] [--write]

CPU time (``time.process_time``), not wall time: the machine is shared; the load is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchlib import load_average, machine, publish  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="replace the section in bench/RESULTS.md")
    args = parser.parse_args()
    from vlmdiag.report.html import render_html
    from vlmdiag.report.plots import plot_result

    report = json.loads((ROOT / "tests" / "report" / "data" / "organism_report.json").read_text())
    plot_result(report["claims"][0])  # warm: imports, font cache
    rows, total = [], 0.0
    for result in report["claims"]:
        best, size = float("inf"), 0
        for _ in range(args.repeats):
            start = time.process_time()
            size = len(plot_result(result) or b"")
            best = min(best, time.process_time() - start)
        total += best
        rows.append(f"| `{result['id']}` | {best:.2f} | {size / 1e3:.0f} |")
    start = time.process_time()
    page = render_html(report)
    html_seconds = time.process_time() - start
    text = "\n".join([
        "## Figures (bench_figures.py)", "",
        f"Machine: {machine()}; load average {load_average()}. CPU seconds (best of {args.repeats}) to draw "
        "each claim's figure as PNG (200 dpi, 3.3 in wide) from the organism's report; the plugin draws "
        "them once at the end of a run with --report-json.", "",
        "| claim | CPU s | PNG kB |", "|---|---|---|", *rows,
        f"| all {len(rows)} figures | {total:.2f} | |", "",
        f"`vlmdiag report --html`: {html_seconds:.2f} CPU s for a {len(page) / 1e3:.0f} kB page.", ""])
    publish("## Figures (bench_figures.py)", text, args.write)


if __name__ == "__main__":
    main()
