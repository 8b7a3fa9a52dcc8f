"""Running pytest as a user does, for the tests of the plugin: ``python -m pytest`` in a fresh
process on the repository's diagnostics, and the checkpoint options of a planted triple."""

from __future__ import annotations

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
