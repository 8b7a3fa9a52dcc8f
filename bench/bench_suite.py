"""Benchmark the full diagnostics suite on the model organism, cold (empty results cache) and
warm (every measurement cached), side by side in one run; optionally cold again with
pytest-xdist workers. Records "Full suite: cold vs warm" in bench/RESULTS.md with ``--write``.

Usage: ``python bench/bench_suite.py [--recipe fast|full] [--workers 2] [--triple DIR] [--organism DIR] [--write]``

Each run is ``pytest diagnostics --origin organism:base --base organism:in --rl organism:rl
--rl-frozen Late=organism:rl-frozen-late --report-only`` in a subprocess (wall time includes
Python start-up, imports, checkpoint opening, judging, the report and plots). The results cache
is a temporary root whose ``organism/`` links to the real organism cache, so the organism is
built once (before timing, if needed) and the user's results cache is not touched. The cold and
warm reports must agree on every verdict and metric; so must the cold run with workers.
``--organism DIR`` runs the suite on the stage folders of an organism entry built elsewhere (by
path, with ``--probes=organism``: the same checkpoints and items as ``organism:*``; an entry's cache
key holds the torch and transformers versions, so another machine's build is not found by name).
``--triple DIR`` also times cold and warm runs of the suite on a weight-only Base/IN/RL triple (the
one bench_weights.py builds), where the cold run does real work (the spectral weight pass).

The runs use a snapshot of the working tree (vlmdiag, diagnostics, configuration) copied at the
start: the cache key holds a hash of vlmdiag's measuring code, so an edit to the tree between the
cold and the warm run (in a tree shared with other work) would otherwise make "warm" a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import benchlib

ROOT = Path(__file__).resolve().parent.parent
RESULTS = benchlib.RESULTS
HEADING = "## Full suite: cold vs warm"
SUITE = ["diagnostics", "--origin=organism:base", "--base=organism:in", "--rl=organism:rl",
         "--rl-frozen=Late=organism:rl-frozen-late", "--report-only"]


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


def run_suite(env: dict, out: Path, name: str, suite: list[str], *extra: str) -> dict:
    """One timed pytest run; returns wall time, time inside the tests, the report and the outcome."""
    report, junit = out / f"{name}.json", out / f"{name}.xml"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "-q", *suite,
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


def cold_warm(fresh_root, out: Path, name: str, suite: list[str], workers: int) -> dict:
    """Cold and warm runs on one results cache, and a cold run with ``workers`` on another."""
    cached = fresh_root(name)
    runs = {"cold": run_suite(cached, out, f"{name}-cold", suite)}
    runs["warm"] = run_suite(cached, out, f"{name}-warm", suite)
    if workers:
        runs["parallel"] = run_suite(fresh_root(f"{name}-parallel"), out, f"{name}-parallel", suite, "-n", str(workers))
    return runs


def table(runs: dict, workers: int) -> tuple[list[str], bool]:
    """The Markdown rows of one workload, and whether every run agreed with the cold one."""
    cold = runs["cold"]
    rows = ["| run | wall (s) | inside tests (s) | claims read from the cache | verdicts and metrics as cold |",
            "|---|---|---|---|---|",
            f"| cold (empty results cache) | {cold['wall']:.1f} | {cold['in_tests']:.1f} | "
            f"{cold['from_cache']}/{cold['claims']} | - |"]
    same = True
    for key, label in (("warm", "warm (same checkpoints, cached)"), ("parallel", f"cold, `-n {workers}`")):
        if key not in runs:
            continue
        run = runs[key]
        agree = outcome(run["report"]) == outcome(cold["report"])
        same &= agree
        inside = f"{run['in_tests']:.1f}" + (" (summed over workers)" if key == "parallel" else "")
        rows.append(f"| {label} | {run['wall']:.1f} | {inside} | {run['from_cache']}/{run['claims']} | "
                    f"{'identical' if agree else 'DIFFERENT'} |")
    ratio = runs["warm"]["wall"] / cold["wall"]
    rows += ["", f"Warm / cold: **{ratio:.1%}** of the cold wall time (target < 10 %); cold {cold['wall']:.0f} s, "
             f"warm {runs['warm']['wall']:.1f} s."]
    return rows, same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=("fast", "full"), default="fast", help="organism recipe")
    parser.add_argument("--workers", type=int, default=0, help="also time a cold run with -n WORKERS")
    parser.add_argument("--triple", type=Path, help="also time the suite on the weight-only Base/IN/RL triple "
                        "in this folder (origin/, base/, rl/; bench_weights.py builds one)")
    parser.add_argument("--organism", type=Path, help="an organism entry folder (base/, in/, rl/, rl-frozen-late/) "
                        "to run on by path instead of this tree's cached build")
    parser.add_argument("--keep-report", type=Path, help="copy the cold run's JSON report of the organism here "
                        "(to compare a GPU run's verdicts and metrics with a CPU run's: bench/compare_reports.py)")
    parser.add_argument("--write", action="store_true", help=f"replace the '{HEADING}' section of {RESULTS}")
    args = parser.parse_args()
    suite = SUITE if args.organism is None else [
        "diagnostics", *(f"--{role}={args.organism.resolve() / stage}" for role, stage in
                         (("origin", "base"), ("base", "in"), ("rl", "rl"))),
        f"--rl-frozen=Late={args.organism.resolve() / 'rl-frozen-late'}", "--probes=organism", "--report-only"]

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
        if args.organism is None:
            # builds what the suite reads (all six stages in trees from before on-demand stages)
            subprocess.run([sys.executable, "-c", "from vlmdiag.organism import checkpoint_path\n"
                                                  "checkpoint_path('rl')"],
                           env=env, check=True, cwd=tree, stdout=subprocess.DEVNULL)
        where = subprocess.run([sys.executable, "-c", "import vlmdiag; print(vlmdiag.__file__)"], env=env,
                               cwd=tree, capture_output=True, text=True, check=True).stdout.strip()
        if not where.startswith(str(tree)):
            sys.exit(f"the runs would import vlmdiag from {where}, not from the snapshot {tree}")
        organism_s = time.perf_counter() - start

        load_before = benchlib.load_average()
        organism = cold_warm(fresh_root, tmp, "organism", suite, args.workers)
        if args.keep_report:
            shutil.copy2(tmp / "organism-cold.json", args.keep_report)
        triple = None
        if args.triple:
            triple_suite = ["diagnostics", *(f"--{role}={args.triple.resolve() / folder}" for role, folder in
                                             (("origin", "origin"), ("base", "base"), ("rl", "rl"))),
                            "--report-only"]
            triple = cold_warm(fresh_root, tmp, "triple", triple_suite, 0)
        load_after = benchlib.load_average()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the organism link goes, never what it points to

    import transformers

    rows, same = table(organism, args.workers)
    command = f"python bench/bench_suite.py --recipe {args.recipe}" + (f" --workers {args.workers}" if args.workers else "") \
        + (f" --triple {args.triple}" if args.triple else "") + (f" --organism {args.organism}" if args.organism else "") \
        + " --write"
    cold = organism["cold"]
    verdicts = ", ".join(f"{claim} {verdict}" for (_, claim), (verdict, _) in sorted(outcome(cold["report"]).items()))
    lines = [
        HEADING, "",
        f"`{command}` ({benchlib.machine()}, Python {platform.python_version()}, "
        f"transformers {transformers.__version__}; load average before/after {load_before} -> {load_after}). "
        f"The suite on the model organism (recipe `{args.recipe}`): `pytest {' '.join(suite)}`, all "
        f"{cold['claims']} claims; wall time of the whole pytest process, and the part spent inside the tests "
        "(measuring + judging; the rest is start-up, imports, opening the checkpoints, the report and plots). "
        f"Organism present or built before timing ({organism_s:.0f} s).", "", *rows, "",
        "Targets: cold < 300 s, warm < 30 s. A warm run reads its cached measurements in well under a second; "
        "the rest is Python start-up, importing torch, opening the checkpoints, re-judging every claim "
        "(bootstrap intervals), the report's plots, and in this development venv the hypothesis pytest "
        "plugin (about 0.9 s at the end of every run; vlmdiag installed without its `test` extra has none): a "
        "floor of several seconds whatever the checkpoints, so the ratio is small only when the cold run does "
        "real work.",
        "", f"Verdicts: {verdicts}."]
    errors = [f"`{c['id']}`: {c['reason'][:160]}" for c in cold["report"]["claims"] if c["verdict"] == "error"]
    if errors:
        lines += ["", "Errors (what the organism's checkpoints are, not the cache): " + "; ".join(errors) + "."]
    if triple is not None:
        triple_rows, triple_same = table(triple, 0)
        same &= triple_same
        lines += ["", f"The same suite on the weight-only Qwen2.5-VL-shaped triple `{args.triple}` (0.74B parameters "
                  "per checkpoint in bf16, see \"Weight pass\"; no tokenizer, so the inference claims skip and "
                  "the cold run is the weight pass with spectra):", "", *triple_rows]
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.write:
        benchlib.write_section(HEADING, text)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
