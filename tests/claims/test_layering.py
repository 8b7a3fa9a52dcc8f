"""The layers import one way (docs/architecture.md): verdict rules load no torch, and no lower
layer imports a higher one or the model organism."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import vlmdiag

PACKAGE = Path(vlmdiag.__file__).resolve().parent

#: Top-level vlmdiag modules/packages by layer; a module may import its own layer and those below.
BASE = {"errors", "atomic", "paths", "stats", "regions", "codec", "cache", "adapters", "checkpoints", "probes"}
MEASURE = {"runtime", "measure", "transplant"}
FRONT = {"plugin", "report", "api", "cli", "invocation", "options", "extensions", "hookspec", "packaged", "integrations",
         "planted", "diagnostics"}
#: What each part may not import (beyond the rule "no front end below the front").
FORBIDDEN = {
    **{name: MEASURE | {"runner", "claims", "organism"} for name in BASE},
    **{name: {"runner", "claims", "organism"} for name in MEASURE},
    "runner": {"claims", "organism"},
    "claims": {"runner", "runtime", "transplant", "organism"},
    "organism": {"runner", "claims"},  # a plugin: it registers through the hooks
    "sequential": {"organism"},  # joins claims and runner (the --sequential loop), below the front ends
}
#: The one deliberate exception: old import paths (vlmdiag.claims.Evidence, ...) resolved lazily.
ALLOWED = {("claims/__init__.py", "runner")}


def imported_parts(path: Path) -> set[str]:
    """The top-level vlmdiag parts a module imports anywhere in it (function-level imports too)."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "vlmdiag" and len(pieces) > 1:
                parts.add(pieces[1])
    return parts


def test_no_module_imports_a_higher_layer():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        part = relative.split("/")[0].removesuffix(".py")
        if part in FRONT or part == "__init__":
            continue
        bad = imported_parts(path) & (FORBIDDEN.get(part, set()) | FRONT)
        bad = {b for b in bad if (relative, b) not in ALLOWED}
        problems += [f"vlmdiag/{relative} imports vlmdiag.{b}" for b in sorted(bad)]
    assert not problems, "\n".join(problems)


def test_the_verdict_rules_import_no_torch():
    """Every vlmdiag.claims module, imported in a fresh interpreter, leaves torch (and transformers)
    unloaded; so do the registry of plans and the curves and tables the rules read."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import vlmdiag.claims\n"
        "for m in pkgutil.iter_modules(vlmdiag.claims.__path__):\n"
        "    importlib.import_module('vlmdiag.claims.' + m.name)\n"
        "vlmdiag.claims.all_claims()\n"
        "import vlmdiag.measure.curves, vlmdiag.measure.tables\n"
        "loaded = sorted(k for k in ('torch', 'transformers') if k in sys.modules)\n"
        "assert not loaded, loaded\n"
        "print('ok', len(vlmdiag.claims.CLAIMS))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stdout + result.stderr


def test_no_module_of_the_runner_or_claims_is_over_400_lines():
    long = [f"{p.relative_to(PACKAGE)}: {n}" for folder in ("runner", "claims") for p in (PACKAGE / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400]
    long += [f"{name}: {n}" for name in ("cache.py", "codec.py", "hookspec.py", "extensions.py")
             if (n := len((PACKAGE / name).read_text(encoding="utf-8").splitlines())) > 400]
    assert not long, long
