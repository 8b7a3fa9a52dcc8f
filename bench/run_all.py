"""Run every benchmark in bench/, one after another, and print a summary.

Usage::

    .venv/bin/python bench/run_all.py              # quick: small sizes, a smoke check (~25 min on 2 busy cores before the xdist thread fix)
    .venv/bin/python bench/run_all.py --full --write   # the sizes bench/RESULTS.md reports, written there
    .venv/bin/python bench/run_all.py --only weights --only transplant
    .venv/bin/python bench/run_all.py --list       # what would run, with which arguments

Each benchmark runs as its own process (``python bench/<script> ARGS``) from the repository root;
its output goes to ``$VLMDIAG_BENCH_DIR/logs/<name>.log`` (default ``/tmp/vlmdiag-bench``) and its
last lines to the terminal. With ``--write`` (only with ``--full``: quick numbers are not the
recorded ones) each benchmark that can replaces its own section of bench/RESULTS.md; the summary
says where each one's numbers went. Exit status 1 when any benchmark failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH_DIR = Path(os.environ.get("VLMDIAG_BENCH_DIR", "/tmp/vlmdiag-bench"))
LOGS = BENCH_DIR / "logs"


@dataclass(frozen=True)
class Bench:
    """One benchmark script: its arguments per mode, the flag that writes its RESULTS.md
    section (None: it prints only), and that section's heading."""

    name: str
    script: str
    quick: tuple[str, ...]
    full: tuple[str, ...]
    write: tuple[str, ...] | None
    section: str


BENCHES = (
    Bench("weights", "bench_weights.py", (), ("--full",), ("--write",), "Weight pass"),
    Bench("identity", "bench_identity.py", ("--repeats", "1"), ("--full",), ("--write",), "Checkpoint identity"),
    Bench("attention", "bench_attention.py", ("--quick", "--repeats", "1"), (), None, "Inference measurements"),
    Bench("transplant", "bench_transplant.py", ("--layers", "4", "--hidden", "128", "--vocab", "1024", "--repeats", "1"),
          (), ("--write-results",), "Transplant sweep"),
    Bench("splicer-memory", "bench_splicer_memory.py",
          ("--layers", "4", "--hidden", "256", "--vocab", "4096", "--repeats", "1"), (), None,
          "Transplant sweep: splicer memory"),
    Bench("organism", "bench_organism.py", ("--recipe", "fast"), ("--recipe", "full", "--recipe", "fast", "--twice"),
          ("--write",), "Model organism build"),
    Bench("sweeps", "bench_sweeps.py", ("--model", "organism", "--only", "skip,swap"), ("--model", "both"),
          ("--write",), "Generation sweeps"),
    Bench("grading", "bench_grading.py", ("--n", "100"), ("--n", "400"), ("--write",), "Grading"),
    Bench("probes", "bench_probes.py", ("--n", "12"), ("--n", "100"), ("--write",), "Probe suites"),
    Bench("suite", "bench_suite.py", ("--recipe", "fast"), ("--recipe", "full", "--workers", "2", "--triple", str(BENCH_DIR / "qwen25vl-0.6b")), ("--write",),
          "Full suite: cold vs warm"),
    Bench("threads", "bench_threads.py", ("--quick",), (), ("--write",), "Threads on a busy machine"),
    Bench("figures", "bench_figures.py", ("--repeats", "1"), (), ("--write",), "Figures (bench_figures.py)"),
)


def command(bench: Bench, *, full: bool, write: bool) -> list[str]:
    """The command line that runs ``bench`` in the given mode."""
    args = list(bench.full if full else bench.quick)
    if write and bench.write:
        args += bench.write
    return [sys.executable, f"bench/{bench.script}", *args]  # run from the repository root


def where(bench: Bench, *, write: bool, log: Path) -> str:
    """Where this run's numbers went."""
    if write and bench.write:
        return f'RESULTS.md "{bench.section}" (and {log})'
    if write:
        return f'{log}; copy into RESULTS.md "{bench.section}" by hand (the script does not write it)'
    return str(log)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the sizes RESULTS.md reports (hours on 2 cores)")
    parser.add_argument("--write", action="store_true", help="let each benchmark replace its RESULTS.md section")
    parser.add_argument("--only", action="append", choices=[b.name for b in BENCHES], help="run only these")
    parser.add_argument("--list", action="store_true", help="print the commands and exit")
    args = parser.parse_args(argv)
    if args.write and not args.full:
        parser.error("--write records numbers in bench/RESULTS.md: use it with --full (quick sizes are a smoke check)")
    chosen = [b for b in BENCHES if not args.only or b.name in args.only]
    missing = [b for b in chosen if not (HERE / b.script).exists()]
    chosen = [b for b in chosen if b not in missing]
    if args.list:
        for bench in chosen:
            print(f"{bench.name:15} {' '.join(command(bench, full=args.full, write=args.write)[1:])}")
        return 0
    LOGS.mkdir(parents=True, exist_ok=True)
    rows = []
    for bench in chosen:
        cmd = command(bench, full=args.full, write=args.write)
        log = LOGS / f"{bench.name}.log"
        print(f"== {bench.name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        with open(log, "w") as out:
            code = subprocess.run(cmd, cwd=HERE.parent, stdout=out, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - start
        tail = log.read_text(errors="replace").rstrip().splitlines()[-12:]
        print("\n".join("   " + line for line in tail), flush=True)
        rows.append((bench, code, seconds, log))
    print("\n| benchmark | status | wall time (s) | numbers |\n|---|---|---|---|")
    for bench, code, seconds, log in rows:
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"| {bench.name} | {status} | {seconds:.0f} | {where(bench, write=args.write, log=log)} |")
    for bench in missing:
        print(f"| {bench.name} | not run: bench/{bench.script} is missing | – | – |")
    return 1 if any(code for _, code, _, _ in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
