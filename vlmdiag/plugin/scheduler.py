"""pytest-xdist scheduling: ``-n N`` distributes whole (diagnostics file, recipe) units, so a
measurement that several claims share is made once, by one worker."""

from __future__ import annotations

import os
import re

import pytest

from vlmdiag.plugin.session import STATE


#: Diagnostics files whose claims read the same measurement pass, by file name: one unit, so
#: the pass (the weight deltas and their spectra) is made by one worker.
SHARED_PASS = {"test_structure.py": "test_updates.py"}


def diagnostic_scope(nodeid: str, recipes) -> str:
    """The unit of work that one xdist worker runs whole: a diagnostics file and one recipe
    (``diagnostics/test_updates.py[main]``), or the file alone for tests without a recipe.

    The claims that share a measurement run in one unit: a file's claims, and the files of
    :data:`SHARED_PASS` together (all five weight claims read one weight pass; the two
    localization claims, one loaded base model). So each measurement is made once, by one
    worker, while other files and recipes run on the other workers.
    """
    module, _, rest = nodeid.partition("::")
    folder, _, name = module.rpartition("/")
    if name in SHARED_PASS:
        module = f"{folder}/{SHARED_PASS[name]}" if folder else SHARED_PASS[name]
    match = re.search(r"\[(.*)\]$", rest)
    if match:
        ids = match.group(1)
        for name in sorted(recipes, key=len, reverse=True):
            if ids == name or ids.startswith(f"{name}-") or ids.endswith(f"-{name}") or f"-{name}-" in ids:
                return f"{module}[{name}]"
    return module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``-n N`` without ``--dist``: schedule whole :func:`diagnostic_scope` units.

    (``--dist loadgroup`` with ``xdist_group`` marks would do, but pytest-xdist 3.8 cannot group
    under pytest 9.2, pytest-dev/pytest-xdist#1386.) An explicit ``--dist`` is respected."""
    state = config.stash.get(STATE, None)
    if state is None or not state.recipes or _dist_given(config):
        return None
    from xdist.scheduler import LoadScopeScheduling

    recipes = tuple(state.recipes)

    class DiagnosticScopeScheduling(LoadScopeScheduling):
        """Load balancing over whole (diagnostics file, recipe) units."""

        def _split_scope(self, nodeid: str) -> str:
            return diagnostic_scope(nodeid, recipes)

    return DiagnosticScopeScheduling(config, log)


def _dist_given(config: pytest.Config) -> bool:
    """Whether the user chose an xdist ``--dist`` mode (command line, PYTEST_ADDOPTS or addopts)."""
    args = [*config.invocation_params.args, *os.environ.get("PYTEST_ADDOPTS", "").split(),
            *config.getini("addopts")]
    return any(a in ("--dist", "-d", "--distload") or a.startswith("--dist=") for a in map(str, args))
