"""vlmdiag's own tests: a results cache of their own."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

# CI gates on these tests, so its Hypothesis examples are the same on every run ("ci", the
# default). `HYPOTHESIS_PROFILE=explore` draws fresh examples each run, to hunt for new failures.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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


def _flip_outside_samples(folder, suffix: str) -> int:
    """Negate the tensor whose on-disk name ends with ``suffix`` in ``folder/model.safetensors``,
    in place (sign bits flipped), except its elements inside the 16 windows of 4 KiB that the
    sampled fingerprint of vlmdiag <= 5a25f72 read; returns how many elements were negated. Two
    checkpoints that differ this way were one model to that fingerprint."""
    import numpy as np

    from vlmdiag.checkpoints.safetensors_header import DTYPES, read_header

    file = Path(folder) / "model.safetensors"
    entries, _ = read_header(file)
    (entry,) = [e for name, e in entries.items() if name.endswith(suffix)]
    data = np.frombuffer(bytearray(file.read_bytes()), dtype=np.uint8)
    size, itemsize = len(data), DTYPES[entry.dtype].itemsize
    starts = np.arange(entry.start, entry.end, itemsize)
    sampled = np.zeros(len(starts), dtype=bool)
    for i in range(16):
        window = size * i // 16
        sampled |= (starts < window + 4096) & (starts + itemsize > window)
    data[starts[~sampled] + itemsize - 1] ^= 0x80  # little-endian: the sign bit is in the last byte
    file.write_bytes(data.tobytes())
    return int((~sampled).sum())


@pytest.fixture(scope="session")
def flip_outside_samples():
    """``flip(folder, suffix) -> count``: see :func:`_flip_outside_samples`."""
    return _flip_outside_samples
