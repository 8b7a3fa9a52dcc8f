"""Benchmark torch CPU thread counts beside a CPU-bound neighbour, and record it in bench/RESULTS.md
("Threads on a busy machine").

Usage: ``python bench/bench_threads.py [--quick] [--repeats R] [--neighbours K] [--write]``

One claim (``abilities.no_uniform_vision_gain``: IN and RL answer every probe prompt, greedy) runs
in a fresh process on tiny random checkpoints of the organism's architecture, while ``K``
processes spin a pure-Python loop beside it (the neighbour: another job on a CI runner). Settings:

- ``old``: ``OMP_NUM_THREADS=<cores>``, i.e. torch's default of one thread per core, as vlmdiag
  ran before it chose threads itself;
- ``new``: no thread variable: vlmdiag's choice (:mod:`vlmdiag.runtime.threads`, the cores free
  when the first model loads);
- ``one``: ``OMP_NUM_THREADS=1`` (the reference the issue quotes).

``--quick``: 4 items per ability and 1 repeat (5 minutes on 2 cores at load ~8, mostly process
start-up); the default is 12 items and 3 repeats. Runs alternate between settings so slow drifts in the machine's load
touch each setting alike. The load averages before and after are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## Threads on a busy machine"
CLAIM = "abilities.no_uniform_vision_gain"

MAKE = """
import sys
from pathlib import Path
from vlmdiag.organism.tasks import corpus_texts
from vlmdiag.organism.tokenizer import build_processor, build_tokenizer, save_processor
from vlmdiag.organism.train import build_model
tokenizer = build_tokenizer(corpus_texts(seed=0, n_per_task=10))
processor = build_processor(tokenizer)
for seed, name in enumerate(("base", "rl")):
    model = build_model(tokenizer, hidden=64, layers=6, heads=4, kv_heads=2, intermediate=128,
                        vision_hidden=32, vision_depth=2, seed=seed)
    model.save_pretrained(Path(sys.argv[1]) / name)
    save_processor(processor, Path(sys.argv[1]) / name)
"""

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import torch
from vlmdiag.claims import CheckpointCache, Evidence, Recipe, all_claims, load_thresholds, run_claim
root, n_items, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = load_thresholds(sys.argv[4]).get(sys.argv[5]).model_copy(update={"n_items": n_items, "max_new_tokens": 16})
evidence = Evidence(Recipe("r", root + "/base", root + "/rl"), CheckpointCache())
t1 = time.perf_counter()
result = run_claim(all_claims()[sys.argv[5]], evidence, "paper", t)
t2 = time.perf_counter()
json.dump({"claim_s": t2 - t1, "total_s": t2 - t0, "threads": torch.get_num_threads(),
           "verdict": result.verdict}, open(out, "w"))
"""

NEIGHBOUR = "while True:\n    pass\n"


def run_child(setting: str, root: str, n_items: int, cpus: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if setting == "old":
        env["OMP_NUM_THREADS"] = str(cpus)
    elif setting == "one":
        env["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        out = Path(tmp) / "out.json"
        subprocess.run([sys.executable, "-c", CHILD, root, str(n_items), str(out), str(ROOT / "thresholds.yaml"),
                        CLAIM], check=True, env=env, cwd=ROOT)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 items per ability, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--neighbours", type=int, default=1, help="CPU-bound neighbour processes")
    parser.add_argument("--settings", default="old,new,one")
    parser.add_argument("--write", action="store_true", help="replace the section in bench/RESULTS.md")
    args = parser.parse_args()
    n_items = 4 if args.quick else 12
    repeats = args.repeats or (1 if args.quick else 3)
    settings = args.settings.split(",")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-threads-ckpt-") as root:
        subprocess.run([sys.executable, "-c", MAKE, root], check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        load_before = benchlib.load_average()
        neighbours = [subprocess.Popen([sys.executable, "-c", NEIGHBOUR]) for _ in range(args.neighbours)]
        results: dict[str, list[dict]] = {s: [] for s in settings}
        try:
            time.sleep(2)  # the neighbours are running before the first measurement
            for r in range(repeats):
                for s in settings:
                    rep = run_child(s, root, n_items, cpus)
                    results[s].append(rep)
                    print(f"{s:4} run {r + 1}: claim {rep['claim_s']:.1f} s (process {rep['total_s']:.1f} s), "
                          f"{rep['threads']} threads, {rep['verdict']}", flush=True)
        finally:
            for p in neighbours:  # only the processes this script started
                p.kill()
                p.wait()
        load_after = benchlib.load_average()
    lines = [HEADING, "",
             f"`python bench/bench_threads.py{' --quick' if args.quick else ''} --neighbours {args.neighbours}` "
             f"({benchlib.machine()} in the parent; {cpus} usable cores; load average 1/5/15 min before "
             f"{load_before}, after {load_after}, the neighbours included). Claim `{CLAIM}` on tiny random "
             f"checkpoints (6 layers, hidden 64), {n_items} items per ability, greedy, 16 new tokens, each "
             f"run in a fresh process beside {args.neighbours} CPU-bound neighbour process(es).", "",
             "| setting | threads | claim time per run (s) | median (s) |", "|---|---|---|---|"]
    for s, reps in results.items():
        times = [x["claim_s"] for x in reps]
        lines.append(f"| {s} | {', '.join(str(x['threads']) for x in reps)} | "
                     f"{', '.join(f'{t:.1f}' for t in times)} | {statistics.median(times):.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        benchlib.write_section(HEADING, text)


if __name__ == "__main__":
    main()
