"""Running pytest as a user does, for the tests of the plugin: ``python -m pytest`` in a fresh
process on the repository's diagnostics, and the checkpoint options of a planted triple."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_pytest(*args, cwd: Path = ROOT, env: dict | None = None, timeout: int = 600) -> tuple[int, str]:
    """``python -m pytest -p no:randomly ARGS`` in ``cwd``; returns the exit code and stdout + stderr.

    ``env`` overrides this process's environment, from which ``$GITHUB_STEP_SUMMARY`` is left out
    (a test run must not write into the step summary of the CI job running the tests)."""
    environ = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env={**environ, **(env or {})})
    return proc.returncode, proc.stdout + proc.stderr


def options(paths: dict, origin: bool = True) -> list[str]:
    """``--base``, ``--rl`` (and ``--origin``) of a planted triple."""
    out = [f"--base={paths['base']}", f"--rl={paths['rl']}"]
    return out + [f"--origin={paths['origin']}"] if origin else out


def float_differences(a, b, *, rel: float = 1e-3, path: str = "") -> list[str]:
    """Where two JSON values differ: structure, strings, booleans and ints exactly, floats beyond
    ``rel`` relative (and 1e-8 absolute). A process's torch thread count follows the machine's
    load, and an fp32 BLAS reduction over another thread count rounds differently: on the planted
    triples 1 against 2 threads moved the principal-subspace rotations by up to 6e-5 relative (a
    rotation of 3.4e-5 by 2e-9), so runs in two processes agree on floats only to that."""
    if isinstance(a, float) or isinstance(b, float):
        ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool) and math.isclose(a, b, rel_tol=rel, abs_tol=1e-8)
        return [] if ok else [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a.keys() ^ b.keys())} in one only"]
        return [d for k in a for d in float_differences(a[k], b[k], rel=rel, path=f"{path}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in float_differences(x, y, rel=rel, path=f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]
