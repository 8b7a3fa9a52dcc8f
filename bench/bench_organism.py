"""Benchmark the model-organism build and record it in bench/RESULTS.md ("Model organism build").

Usage: ``python bench/bench_organism.py [--recipe full|fast ...] [--twice] [--write]``

Each recipe is built in a fresh subprocess (so ``ru_maxrss`` is that build's peak RSS) into a
temporary folder, not the cache. ``--twice`` builds it again and compares the weights' SHA-256
(determinism). ``--write`` replaces the "Model organism build" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "## Model organism build"

CHILD = """
import json, sys, resource
from pathlib import Path
from vlmdiag.organism.build import get_recipe, build_organism, ensure_built, entry_dir, REPORT_DIR
recipe = get_recipe(sys.argv[1])
if sys.argv[2] == "cache":
    entry = entry_dir(recipe)
    if entry.exists():
        sys.exit(f"{entry} exists already; remove it to benchmark a cache build")
    entry = ensure_built(recipe, progress=False)
    rep = json.loads((entry / REPORT_DIR / "training_report.json").read_text())
else:
    rep = build_organism(recipe, sys.argv[2], progress=False)
rep["peak_rss_mb_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
json.dump(rep, open(sys.argv[3], "w"))
"""


def build_once(recipe: str, into_cache: bool = False) -> dict:
    """Build ``recipe`` in a subprocess (into a temporary folder, or into the cache)."""
    with tempfile.TemporaryDirectory(prefix="bench-organism-") as tmp:
        out = "cache" if into_cache else str(Path(tmp) / "build")
        rep_path = Path(tmp) / "report.json"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", CHILD, recipe, out, str(rep_path)], check=True,
                       stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        rep = json.loads(rep_path.read_text())
        rep["wall_s_with_startup"] = wall
        return rep


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def section(results: dict[str, list[dict]], load_before: str, load_after: str) -> str:
    lines = [HEADING, ""]
    first = next(iter(results.values()))[0]
    v = first["versions"]
    lines.append(
        f"`python bench/bench_organism.py --recipe {' --recipe '.join(results)}"
        f"{' --twice' if any(len(r) > 1 for r in results.values()) else ''} --write` "
        f"({platform.machine()}, {os.cpu_count()} CPUs, torch {v['torch']}, transformers "
        f"{v['transformers']}, trl {v['trl']}; 1 intra-op thread (recipe `threads=1`); load average "
        f"before/after {load_before} -> {load_after}: other engineers' jobs shared the 2 cores). "
        f"Model: Qwen2.5-VL, {first['n_params'] / 1e6:.2f}M parameters "
        f"(LLM {first['recipe']['hidden']}x{first['recipe']['layers']} layers, vision "
        f"{first['recipe']['vision_hidden']}x{first['recipe']['vision_depth']} blocks), 112x112 "
        f"images (16 visual tokens). Each build runs in its own process; RSS is `ru_maxrss`.")
    lines.append("")
    stages = ["setup", "vision", "base", "in", "rl", "rl-frozen-early", "rl-frozen-mid",
              "rl-frozen-late"]
    lines.append("| recipe | run | " + " | ".join(stages) + " | evaluation (all stages) | total (s) "
                 "| wall incl. start-up (s) | peak RSS (MB) |")
    lines.append("|" + "---|" * (len(stages) + 6))
    for name, reps in results.items():
        for i, rep in enumerate(reps):
            t = rep["times_s"]
            ev = sum(v for k, v in t.items() if k.startswith("eval:"))
            lines.append(f"| {name} | {i + 1} | " + " | ".join(f"{t.get(s, 0):.1f}" for s in stages)
                         + f" | {ev:.1f} | {t['total']:.1f} | {rep['wall_s_with_startup']:.1f} | "
                         f"{rep['peak_rss_mb_process']:.0f} |")
    lines.append("")
    for name, reps in results.items():
        if len(reps) > 1:
            same = reps[0]["weights_sha256"] == reps[1]["weights_sha256"]
            lines.append(f"Determinism ({name}): two builds gave "
                         f"{'bit-identical weights for all six stages' if same else 'DIFFERENT weights: ' + ', '.join(s for s in reps[0]['weights_sha256'] if reps[0]['weights_sha256'][s] != reps[1]['weights_sha256'][s])}.")
    lines.append("")
    for name, reps in results.items():
        rep = reps[0]
        acc = rep["accuracy"]
        cols = list(acc["base"])
        lines.append(f"Held-out accuracy, recipe `{name}` (95 % Wilson interval; n per set: "
                     + ", ".join(f"{c} {acc['base'][c]['n']}" for c in cols) + "):")
        lines.append("")
        lines.append("| stage | " + " | ".join(cols) + " |")
        lines.append("|" + "---|" * (len(cols) + 1))
        lines.append("| chance | " + " | ".join(f"{rep['chance'][c]:.2f}" for c in cols) + " |")
        for stage, a in acc.items():
            lines.append(f"| {stage} | " + " | ".join(
                f"{a[c]['accuracy']:.2f} [{a[c]['wilson95'][0]:.2f}, {a[c]['wilson95'][1]:.2f}]"
                for c in cols) + " |")
        lines.append("")
        lines.append("RL minus IN on the same held-out items (paired bootstrap 95 %):")
        lines.append("")
        for stage, d in rep["rl_vs_in"].items():
            lines.append(f"- {stage}: " + "; ".join(
                f"{k} {v['diff']:+.3f} [{v['bootstrap95'][0]:+.3f}, {v['bootstrap95'][1]:+.3f}]"
                for k, v in d.items()))
        hist = rep["stages"]["rl"]["rl_history"]
        if hist:
            k = max(1, len(hist) // 4)
            first_q = sum(h["reward"] for h in hist[:k]) / k
            last_q = sum(h["reward"] for h in hist[-k:]) / k
            zero = sum(h.get("frac_reward_zero_std") or 0 for h in hist) / len(hist)
            kl = [h.get("kl") or 0.0 for h in hist]
            corr = [h.get("rewards/correctness_reward/mean") or 0.0 for h in hist]
            r = rep["recipe"]
            lines.append(f"- GRPO (rl stage; {r['rl_steps']} steps of {r['rl_prompts_per_step']} "
                         f"prompts x {r['rl_generations']} samples, lr {r['rl_lr']:g}, beta "
                         f"{r['rl_beta']:g}, {r['rl_perception_share']:.0%} perception prompts): "
                         f"mean reward (correctness + 0.5 format, max 1.5) first quarter of steps "
                         f"{first_q:.3f}, last quarter {last_q:.3f}; correctness "
                         f"{sum(corr[:k]) / k:.3f} -> {sum(corr[-k:]) / k:.3f}; mean fraction of "
                         f"groups with zero reward std {zero:.2f}; KL to IN at the last step "
                         f"{kl[-1]:.4f}.")
        lines.append("")
    return "\n".join(lines)


def write_section(text: str) -> None:
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        current = pattern.sub(lambda _: text + "\n", current)
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    RESULTS.write_text(current)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", action="append", default=None)
    ap.add_argument("--twice", action="store_true")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--cache", action="store_true",
                    help="build the first run of each recipe into the cache (as checkpoint_path)")
    ap.add_argument("--save-json", help="also write the raw build reports to this file")
    ap.add_argument("--from-json", help="rewrite the section from reports saved by --save-json")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        results, load_before, load_after = saved["results"], saved["load_before"], saved["load_after"]
    else:
        recipes = args.recipe or ["fast", "full"]
        load_before = _load()
        results = {}
        for name in recipes:
            results[name] = [build_once(name, into_cache=args.cache)]
            if args.twice:
                results[name].append(build_once(name))
        load_after = _load()
        if args.save_json:
            Path(args.save_json).write_text(json.dumps(
                {"results": results, "load_before": load_before, "load_after": load_after}))
    text = section(results, load_before, load_after)
    print(text)
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
