"""vlmdiag's own tests: a results cache of their own."""

import os
import shutil
import tempfile
from pathlib import Path

_ISOLATED = "VLMDIAG_TESTS_RESULTS_ISOLATED"
_made: list[Path] = []


def pytest_configure(config):
    """Point ``$VLMDIAG_CACHE_DIR`` at a temporary root whose ``organism/`` links to the real
    one: organism builds are shared, while results cached by the pytest runs the tests start
    never reach the user's cache. Inherited by subprocesses and xdist workers (set once)."""
    if os.environ.get(_ISOLATED):
        return
    from vlmdiag.organism.build import cache_root

    real = cache_root()
    (real / "organism").mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="vlmdiag-tests-cache-"))
    (root / "organism").symlink_to(real / "organism", target_is_directory=True)
    _made.append(root)
    os.environ["VLMDIAG_CACHE_DIR"] = str(root)
    os.environ[_ISOLATED] = "1"


def pytest_unconfigure(config):
    for root in _made:
        shutil.rmtree(root, ignore_errors=True)  # removes the link, never what it points to
