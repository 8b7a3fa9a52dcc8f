"""Benchmark the full diagnostics suite on the model organism, cold (empty results cache) and
warm (every measurement cached), side by side in one run; optionally cold again with
pytest-xdist workers. Records "Full suite: cold vs warm" in bench/RESULTS.md with ``--write``.

Usage: ``python bench/bench_suite.py [--recipe fast|full] [--workers 2] [--write]``

Each run is ``pytest diagnostics --origin organism:base --base organism:in --rl organism:rl
--rl-frozen Late=organism:rl-frozen-late --report-only`` in a subprocess (wall time includes
Python start-up, imports, checkpoint opening, judging, the report and plots). The results cache
is a temporary root whose ``organism/`` links to the real organism cache, so the organism is
built once (before timing, if needed) and the user's results cache is not touched. The cold and
warm reports must agree on every verdict and metric; so must the cold run with workers.

The runs use a snapshot of the working tree (vlmdiag, diagnostics, configuration) copied at the
start: the cache key holds a hash of vlmdiag's measuring code, so an edit to the tree between the
cold and the warm run (in a tree shared with other work) would otherwise make "warm" a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "## Full suite: cold vs warm"
SUITE = ["diagnostics", "--origin=organism:base", "--base=organism:in", "--rl=organism:rl",
         "--rl-frozen=Late=organism:rl-frozen-late", "--report-only"]


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


SNAPSHOT = ("vlmdiag", "diagnostics", "fixtures", "thresholds.yaml", "pyproject.toml", "conftest.py")


def snapshot(into: Path) -> Path:
    """Copy what a suite run reads from the tree into ``into``; runs use it through PYTHONPATH."""
    into.mkdir()
    for name in SNAPSHOT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, into / name)
    return into


def run_suite(env: dict, out: Path, name: str, *extra: str) -> dict:
    """One timed pytest run; returns wall time, time inside the tests, the report and the outcome."""
    report, junit = out / f"{name}.json", out / f"{name}.xml"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "-q", *SUITE,
                           f"--report-json={report}", f"--junitxml={junit}", *extra],
                          cwd=env["BENCH_TREE"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not report.exists():
        sys.exit(f"{name}: pytest exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    data = json.loads(report.read_text())
    in_tests = sum(float(case.get("time", 0)) for case in ET.parse(junit).iter("testcase"))
    return {"wall": wall, "in_tests": in_tests, "report": data,
            "from_cache": sum(bool((c.get("cache") or {}).get("from_cache")) for c in data["claims"]),
            "claims": len(data["claims"])}


def outcome(report: dict) -> dict:
    """``{(recipe, claim): (verdict, metrics)}``: what must not change between runs."""
    return {(c["recipe"], c["id"]): (c["verdict"], c["metrics"]) for c in report["claims"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=("fast", "full"), default="fast", help="organism recipe")
    parser.add_argument("--workers", type=int, default=0, help="also time a cold run with -n WORKERS")
    parser.add_argument("--write", action="store_true", help=f"replace the '{HEADING}' section of {RESULTS}")
    args = parser.parse_args()

    from vlmdiag.organism.build import cache_root

    real = cache_root()
    (real / "organism").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-suite-"))
    try:
        tree = snapshot(tmp / "tree")
        env = {**os.environ, "VLMDIAG_ORGANISM_RECIPE": args.recipe, "BENCH_TREE": str(tree),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
        env.pop("VLMDIAG_TESTS_RESULTS_ISOLATED", None)

        def fresh_root(name: str) -> dict:
            root = tmp / name
            root.mkdir()
            (root / "organism").symlink_to(real / "organism", target_is_directory=True)
            return {**env, "VLMDIAG_CACHE_DIR": str(root)}

        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from vlmdiag.organism import STAGES, checkpoint_path\n"
                                              "for s in STAGES: checkpoint_path(s)"],
                       env=env, check=True, cwd=tree, stdout=subprocess.DEVNULL)
        where = subprocess.run([sys.executable, "-c", "import vlmdiag; print(vlmdiag.__file__)"], env=env,
                               cwd=tree, capture_output=True, text=True, check=True).stdout.strip()
        if not where.startswith(str(tree)):
            sys.exit(f"the runs would import vlmdiag from {where}, not from the snapshot {tree}")
        organism_s = time.perf_counter() - start

        load_before = _load()
        cached = fresh_root("serial")
        cold = run_suite(cached, tmp, "cold")
        warm = run_suite(cached, tmp, "warm")
        parallel = run_suite(fresh_root("parallel"), tmp, "parallel", "-n", str(args.workers)) if args.workers else None
        load_after = _load()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the organism link goes, never what it points to

    same_warm = outcome(warm["report"]) == outcome(cold["report"])
    same_parallel = parallel is None or outcome(parallel["report"]) == outcome(cold["report"])
    verdicts = ", ".join(f"{claim} {verdict}" for (_, claim), (verdict, _) in sorted(outcome(cold["report"]).items()))
    import torch
    import transformers

    lines = [
        HEADING, "",
        f"`python bench/bench_suite.py --recipe {args.recipe}" + (f" --workers {args.workers}" if args.workers else "")
        + " --write` (x86_64, " + f"{os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}; organism recipe `{args.recipe}`; load average before/after "
        f"{load_before} -> {load_after}: other engineers' jobs shared the cores). The suite: "
        f"`pytest {' '.join(SUITE)}`, all {cold['claims']} claims; wall time of the whole pytest process, "
        "and the part spent inside the tests (measuring + judging; the rest is start-up, imports, opening the "
        "checkpoints, the report and plots). Organism present or built before timing "
        f"({organism_s:.0f} s).", "",
        "| run | wall (s) | inside tests (s) | claims read from the cache | verdicts and metrics as cold |",
        "|---|---|---|---|---|",
        f"| cold (empty results cache) | {cold['wall']:.1f} | {cold['in_tests']:.1f} | {cold['from_cache']}/{cold['claims']} | - |",
        f"| warm (same checkpoints, cached) | {warm['wall']:.1f} | {warm['in_tests']:.1f} | "
        f"{warm['from_cache']}/{warm['claims']} | {'identical' if same_warm else 'DIFFERENT'} |",
    ]
    if parallel is not None:
        lines.append(f"| cold, `-n {args.workers}` | {parallel['wall']:.1f} | {parallel['in_tests']:.1f} (summed over workers) | "
                     f"{parallel['from_cache']}/{parallel['claims']} | {'identical' if same_parallel else 'DIFFERENT'} |")
    ratio = warm["wall"] / cold["wall"]
    lines += ["", f"Warm / cold: **{ratio:.1%}** of the cold wall time (target < 10 %); cold {cold['wall']:.0f} s "
              f"(target < 300 s), warm {warm['wall']:.1f} s (target < 30 s). A warm run reads {warm['claims']} "
              "cached measurements in well under a second; the rest of its time is Python start-up, importing "
              "torch and transformers, opening the checkpoints, re-judging every claim, and the report's plots.",
              "", f"Verdicts: {verdicts}."]
    errors = [f"`{c['id']}`: {c['reason'][:160]}" for c in cold["report"]["claims"] if c["verdict"] == "error"]
    if errors:
        lines += ["", "Errors (what the organism's checkpoints are, not the cache): " + "; ".join(errors) + "."]
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.write:
        current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
        pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
        current = pattern.sub(lambda m: text + "\n", current) if pattern.search(current) \
            else current.rstrip("\n") + "\n\n" + text + "\n"
        RESULTS.write_text(current)
    return 0 if same_warm and same_parallel else 1


if __name__ == "__main__":
    raise SystemExit(main())
