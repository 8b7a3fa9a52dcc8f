"""Checkpoint identity: hashing every byte (xxh3-128) against reading the bytes, cold vs remembered.

On the Base/IN/RL triple of ``bench_weights.py`` (built once under $VLMDIAG_BENCH_DIR or
/tmp/vlmdiag-bench; ``--full``: 24 layers, 0.74B parameters per checkpoint), times, each in a fresh
subprocess after the page cache was warmed, for the three checkpoints together:

  read        every byte of the three safetensors files (16 MiB chunks), no hashing
  sampled     the fingerprint before exact identity: config, headers, 16 × 4 KiB per file (sha256)
  hash        ``Checkpoint.fingerprint`` without a store: every tensor and file hashed
  hash-store  the same with an empty store (a first run: hashes, then writes the entries)
  remembered  the same with the store a first run left (a rerun: a stat and one entry per file)

Checkpoint headers are read before the clock starts (every run reads them anyway).

Run:  .venv/bin/python bench/bench_identity.py [--full] [--layers N] [--repeats 3] [--write]
``--write`` replaces the "Checkpoint identity" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from bench_weights import STAGES, build, sizes

HEADING = "## Checkpoint identity"
KINDS = ("read", "sampled", "hash", "hash-store", "remembered")
LABELS = {
    "read": "read every byte of the 3 files (16 MiB chunks), no hashing",
    "sampled": "before: sampled fingerprint (config, headers, 16 × 4 KiB a file)",
    "hash": "**exact fingerprint, cold** (every byte, xxh3-128; no store)",
    "hash-store": "exact fingerprint, first run (hash + write the remembered entries)",
    "remembered": "**exact fingerprint, rerun** (remembered: stat + one entry a file)",
}


def sampled_fingerprint(checkpoint) -> str:
    """The fingerprint of vlmdiag <= 5a25f72, for comparison."""
    digest = hashlib.sha256((checkpoint.path / "config.json").read_bytes())
    for file in sorted({e.file for e in checkpoint._entries.values()}):
        with open(file, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            digest.update(f.read(length))
        size = file.stat().st_size
        with open(file, "rb") as f:
            for i in range(16):
                f.seek(size * i // 16)
                digest.update(f.read(4096))
    return digest.hexdigest()[:16]


def task(kind: str, folder: Path, store_dir: str) -> dict:
    import filelock  # noqa: F401  (imported by every run that uses the results cache)

    from vlmdiag.cache import ResultsCache
    from vlmdiag.checkpoints import Checkpoint

    store = ResultsCache(store_dir) if kind in ("hash-store", "remembered") else None
    checkpoints = [Checkpoint(folder / s, store=store) for s in STAGES]
    start = time.perf_counter()
    if kind == "read":
        for c in checkpoints:
            with open(c.path / "model.safetensors", "rb", buffering=0) as handle:
                while handle.read(16 << 20):
                    pass
    elif kind == "sampled":
        for c in checkpoints:
            sampled_fingerprint(c)
    else:
        for c in checkpoints:
            c.fingerprint  # noqa: B018
    return {"kind": kind, "seconds": time.perf_counter() - start}


def run(kind: str, folder: Path, store_dir: Path) -> dict:
    out = subprocess.check_output([sys.executable, __file__, "--task", kind, str(folder), str(store_dir)], text=True)
    return json.loads(out.strip().splitlines()[-1])


def measure(folder: Path, repeats: int) -> dict[str, list[float]]:
    """Seconds of every run of each kind, ``repeats`` interleaved rounds; ``hash-store`` starts
    from an empty store each time, ``remembered`` from the one the last ``hash-store`` left."""
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    root = Path(tempfile.mkdtemp(prefix="vlmdiag-bench-identity-"))
    try:
        for _ in range(repeats):
            shutil.rmtree(root / "store", ignore_errors=True)
            for kind in KINDS:
                times[kind].append(run(kind, folder, root / "store")["seconds"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", nargs=3, metavar=("KIND", "FOLDER", "STORE"), help=argparse.SUPPRESS)
    parser.add_argument("--layers", type=int, default=None, help="LLM decoder layers (default 6; 24 with --full)")
    parser.add_argument("--full", action="store_true", help="the 0.74B triple (24 layers)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median reported); default 3")
    parser.add_argument("--write", action="store_true", help="replace the 'Checkpoint identity' section of RESULTS.md")
    args = parser.parse_args(argv)
    if args.task:
        print(json.dumps(task(args.task[0], Path(args.task[1]), args.task[2])))
        return 0
    layers = args.layers or (24 if args.full else 6)
    folder = build(layers)
    files_gb, _, params = sizes(folder)
    load_before = benchlib.load_average()
    run("read", folder, Path("/nonexistent"))  # warm the page cache
    times = measure(folder, args.repeats)
    load_after = benchlib.load_average()
    median = {kind: statistics.median(ts) for kind, ts in times.items()}
    read = median["read"]
    rows = ["| what | seconds (median; all runs) | × read time | GB/s |", "|---|---|---|---|"]
    for kind in KINDS:
        t = median[kind]
        runs = ", ".join(f"{x:.3f}" for x in times[kind])
        rate = f"{files_gb / t:.2f}" if kind in ("read", "hash", "hash-store") else "–"
        rows.append(f"| {LABELS[kind]} | {t:.3f} ({runs}) | {t / read:.3f} | {rate} |")
    command = (f"`.venv/bin/python bench/bench_identity.py{' --full' if args.full else ''}"
               f"{f' --layers {args.layers}' if args.layers else ''}`")
    lines = [
        HEADING, "",
        f"{command} ({benchlib.machine()}; load average {load_before} before, {load_after} after). "
        f"The Base/IN/RL triple of the weight pass ({layers} LLM layers, {params:.2f}B parameters per "
        f"checkpoint, {files_gb:.2f} GB of bf16 safetensors in all), page cache warm; each run a fresh "
        f"subprocess timing the three checkpoints' identities after their headers were read; "
        f"{args.repeats} interleaved rounds:", "",
        *rows, "",
        f"- A cold exact identity costs {median['hash'] / read:.2f}× reading the bytes "
        f"({files_gb / median['hash']:.1f} GB/s for xxh3-128 and the reading together); a run with the results "
        f"cache pays it once per file version ({median['hash-store'] / read:.2f}× with the store writes).",
        f"- A rerun on unchanged files takes {median['remembered'] * 1e3:.1f} ms for the three checkpoints "
        f"({median['remembered'] / read * 100:.2f} % of reading them; the sampled fingerprint it replaces took "
        f"{median['sampled'] * 1e3:.1f} ms): a stat and one remembered entry per weight file, files up to 1 MiB "
        f"hashed anew.",
    ]
    benchlib.publish(HEADING, "\n".join(lines) + "\n", args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
