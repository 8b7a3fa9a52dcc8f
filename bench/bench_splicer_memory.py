"""Splicer memory benchmark: the extra resident memory a transplant sweep needs on top of the
loaded model, and its time.

Each measurement runs in its own subprocess: load IN (fp32), copy its tensors into private
memory (``from_pretrained`` leaves them as memory-mapped file pages that would only become
resident, and count, when the splicer reads them), then reset the kernel's peak-RSS
counter (``/proc/self/clear_refs``), run ``Splicer.sweep`` over the 8 models of Table 2 (or one
``Splicer.splice`` per variant), and report peak RSS minus the RSS before the sweep. No forward
pass runs, so the number is the splicer's own memory.

``--tree DIR`` (repeatable) measures the vlmdiag package found in ``DIR`` as well, side by side,
e.g. an older commit unpacked with ``git archive <rev> vlmdiag | tar -x -C DIR``.

Usage::

    python bench/bench_splicer_memory.py [--layers 12 --hidden 1024 --vocab 32768] [--repeats 3] [--tree DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import gc, json, sys, time
from pathlib import Path
import psutil, torch
from transformers import AutoModelForImageTextToText
import vlmdiag
from vlmdiag.transplant import Splicer, all_variants

a, b, way = sys.argv[1], sys.argv[2], sys.argv[3]
torch.set_num_threads(1)
model = AutoModelForImageTextToText.from_pretrained(a, dtype=torch.float32).eval()
for tensor in model.state_dict().values():  # own, resident memory (as on a GPU), not file-backed pages
    tensor.data = tensor.data.clone()
splicer = Splicer(model, a, b, regions="thirds")
gc.collect()
proc = psutil.Process()
Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to the current RSS
before = proc.memory_info().rss
start = time.perf_counter()
if way == "sweep":
    for variant, record in splicer.sweep():
        pass
else:
    for variant in all_variants():
        with splicer.splice(variant):
            pass
seconds = time.perf_counter() - start
peak = int(next(l for l in Path("/proc/self/status").read_text().splitlines()
                if l.startswith("VmHWM")).split()[1]) * 1024
model_bytes = sum(p.numel() * p.element_size() for p in model.state_dict().values())
print(json.dumps({"extra_bytes": peak - before, "seconds": seconds, "model_bytes": model_bytes,
                  "vlmdiag": str(Path(vlmdiag.__file__).parent.parent)}))
"""


def measure(tree: str | None, a: Path, b: Path, way: str) -> dict:
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = os.pathsep.join([tree, env.get("PYTHONPATH", "")])
    # cwd: `python -c` puts the working folder first on sys.path, which would shadow --tree
    out = subprocess.run([sys.executable, "-c", CHILD, str(a), str(b), way], env=env, check=True,
                         capture_output=True, text=True, cwd=a.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_transplant import build_pair

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (median time, "
                                                                  "largest memory)")
    parser.add_argument("--tree", action="append", default=[],
                        help="also measure the vlmdiag package in this folder")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        a, b = build_pair(Path(tmp), layers=args.layers, hidden=args.hidden, vocab=args.vocab)
        runs = {(tree, way): [] for tree in [None, *args.tree] for way in ("sweep", "splice")}
        for _ in range(args.repeats):  # interleaved, so load changes on a shared machine hit every row
            for (tree, way), results in runs.items():
                results.append(measure(tree, a, b, way))
        for (tree, way), results in runs.items():
            rows.append((tree, way, {**results[0], "extra_bytes": max(r["extra_bytes"] for r in results),
                                     "seconds": statistics.median(r["seconds"] for r in results)}))
    print(f"model: {rows[0][2]['model_bytes'] / 1e6:.0f} MB of fp32 parameters "
          f"({args.layers} layers, hidden {args.hidden}, vocab {args.vocab})")
    print(f"{args.repeats} runs each, interleaved; load average {os.getloadavg()[0]:.1f} at the end")
    print("| vlmdiag | way | extra peak RSS (MB), largest | time (s), median |\n|---|---|---|---|")
    for tree, way, r in rows:
        print(f"| {r['vlmdiag']} | {way} | {r['extra_bytes'] / 1e6:.0f} | {r['seconds']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
