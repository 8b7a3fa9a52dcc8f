"""``--sequential`` end to end through pytest on tiny random checkpoints (synthetic probe suite):
the report records each inference claim's looks, N used, per-look level and stopping reason, the
measurements of every look go to the results cache, and a rerun without the cache gives the same
verdicts and the same looks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = ("localization.reasoning_late", "abilities.no_uniform_vision_gain")


def _pytest(*args, cache: Path):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:xdist", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "VLMDIAG_CACHE_DIR": str(cache)})
    return proc.returncode, proc.stdout + proc.stderr


def _thresholds(folder: Path) -> Path:
    data = yaml.safe_load((ROOT / "thresholds.yaml").read_text())
    for cid in CLAIMS:
        data["claims"][cid].update(n_items=2, max_new_tokens=3, bootstrap_resamples=200)
    data["sequential"] = {"looks": 2, "claims": {"abilities.no_uniform_vision_gain": {"max_items": 6}}}
    path = folder / "sequential.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(runnable, tmp_path, name, *extra):
    report = tmp_path / f"{name}.json"
    code, out = _pytest("--probes=synthetic:preset=small,max_new_tokens=3", f"--base={runnable['base']}",
                        f"--rl={runnable['rl']}",
                        f"--thresholds={_thresholds(tmp_path)}", f"--report-json={report}", "--report-only",
                        "--sequential", *extra, "diagnostics/test_localization.py", "diagnostics/test_abilities.py",
                        "-k", "reasoning or uniformly", cache=tmp_path / "cache")
    assert code == 0, out[-3000:]
    return {c["id"]: c for c in json.loads(report.read_text())["claims"]}


def test_sequential_runs_record_their_looks_and_rerun_identically(runnable, tmp_path):
    first = _run(runnable, tmp_path, "first")
    looks = {"localization.reasoning_late": [2, 4], "abilities.no_uniform_vision_gain": [3, 6]}
    for cid in CLAIMS:
        claim = first[cid]
        assert claim["verdict"] not in ("error", "skipped"), (cid, claim["reason"])
        record = claim["sequential"]
        assert record["looks"] == looks[cid] and record["spending"] == "bonferroni"
        assert record["level_per_look"] == 1 - (1 - 0.95) / 2 and record["confidence"] == 0.95
        taken = [look["n_items"] for look in record["looks_taken"]]
        assert taken == looks[cid][:len(taken)] and record["n_used"] == taken[-1]
        assert record["stop"] == ("decided" if claim["verdict"] in ("reproduced", "not_reproduced") else "max_items")
        assert record["looks_taken"][-1]["verdict"] == claim["verdict"] and "[sequential:" in claim["reason"]
        assert claim["cache"]["measurements"]  # every look's measurement went through the results cache
    # vision_early is not selected; the weight claims are not sampled: no record there
    again = _run(runnable, tmp_path, "again", "--no-cache")
    for cid in CLAIMS:
        assert again[cid]["verdict"] == first[cid]["verdict"]
        assert again[cid]["sequential"] == first[cid]["sequential"]
        assert again[cid]["metrics"]["statistic"] == first[cid]["metrics"]["statistic"]
