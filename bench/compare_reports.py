"""Compare two vlmdiag JSON reports claim by claim: verdicts, reasons and every metric must be
identical; timings, paths, checkpoint fingerprints, the environment and cache status are ignored.

    python bench/compare_reports.py BEFORE.json AFTER.json [MORE_BEFORE.json MORE_AFTER.json ...]

Prints one line per report pair (``identical: N claims``) or every difference with its JSON path;
exits 1 when any pair differs. Used to check that a refactoring changes no verdict or metric
(issue 13's "Done means").
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

#: Per-claim fields compared (``cache`` is hit/miss/off bookkeeping, not a result).
CLAIM_FIELDS = ("verdict", "reason", "metrics", "statement", "source", "gate", "series")
#: Top-level fields compared besides the claims.
TOP_FIELDS = ("schema_version", "regions", "complete")
#: Keys ignored wherever they occur (timings; the traceback of an error verdict names file paths).
IGNORED_KEYS = {"seconds", "elapsed", "elapsed_s", "duration", "created", "traceback"}


def differences(a, b, path: str = "") -> list[str]:
    """Every place where ``a`` and ``b`` differ, as ``path: a != b`` lines (NaN equals NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key in IGNORED_KEYS:
                continue
            if key not in a or key not in b:
                out.append(f"{path}.{key}: only in {'after' if key not in a else 'before'}")
                continue
            out += differences(a[key], b[key], f"{path}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} != {b!r}"]


def compare(before: dict, after: dict) -> tuple[int, list[str]]:
    """``(claims compared, differences)`` of two reports."""
    out = [d for key in TOP_FIELDS for d in differences(before.get(key), after.get(key), key)]
    by_key = lambda report: {(c["id"], c["recipe"]): c for c in report.get("claims", [])}  # noqa: E731
    a, b = by_key(before), by_key(after)
    for key in sorted(set(a) | set(b)):
        name = f"{key[0]}[{key[1]}]"
        if key not in a or key not in b:
            out.append(f"{name}: only in {'after' if key not in a else 'before'}")
            continue
        for field in CLAIM_FIELDS:
            out += differences(a[key].get(field), b[key].get(field), f"{name}.{field}")
    return len(set(a) & set(b)), out


def main(argv: list[str]) -> int:
    if len(argv) < 2 or len(argv) % 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    failed = False
    for before_path, after_path in zip(argv[::2], argv[1::2]):
        n, diffs = compare(json.loads(Path(before_path).read_text()), json.loads(Path(after_path).read_text()))
        label = f"{before_path} vs {after_path}"
        if diffs:
            failed = True
            print(f"DIFFERENT ({len(diffs)} differences over {n} claims): {label}")
            for line in diffs[:50]:
                print("  " + line)
        else:
            print(f"identical: {n} claims (verdicts, reasons, metrics): {label}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
