"""Torch CPU threads that hold up on a busy machine.

Torch starts one intra-op thread per core, and its OpenMP threads spin while they wait for each
other. Beside other jobs (a CI runner, a shared workstation) a spinning thread that loses its core
stalls every op until it is scheduled again: one claim took 288 s with torch's default threads on
2 busy cores and 7.5 s with one thread (issue 15; ``bench/bench_threads.py``). So vlmdiag runs
torch on the cores that are free when it loads its first model, shared among pytest-xdist
workers; the user's ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` always win.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping

_configured = False


def usable_cpus() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def busy_cpus(*, reads: int = 5, pause_s: float = 0.01) -> float:
    """Cores that other work keeps busy right now, as a share of this process's cores.

    Linux: the median, over ``reads`` reads ``pause_s`` apart, of the kernel's count of runnable
    threads (``/proc/loadavg``, 4th field) minus this reader; elsewhere the 1-minute load
    average; 0 when neither is available. Counts on a machine with more cores than this process
    may use are scaled to its share of them.
    """
    counts = []
    for i in range(reads):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            break
        if i + 1 < reads:
            time.sleep(pause_s)
    if counts:
        busy = float(sorted(counts)[len(counts) // 2])
    else:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0
    return max(0.0, busy) * usable_cpus() / max(os.cpu_count() or 1, usable_cpus())


def cpu_threads(cpus: int, busy: float, workers: int, environ: Mapping[str, str]) -> int | None:
    """Intra-op threads for each of ``workers`` processes sharing ``cpus`` cores of which
    ``busy`` are taken by other work: ``(cpus − busy) // workers`` (whole cores), at least 1.

    Returns None (leave torch's setting) when the user set ``OMP_NUM_THREADS`` or
    ``MKL_NUM_THREADS`` in ``environ``.
    """
    if environ.get("OMP_NUM_THREADS") or environ.get("MKL_NUM_THREADS"):
        return None
    free = max(0, math.floor(cpus - busy + 1e-9))
    return max(1, free // max(1, workers))


def configure_cpu_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """Once per process, before the first model runs on the CPU: set torch's intra-op threads to
    :func:`cpu_threads` of the cores free now, shared among the pytest-xdist workers
    (``PYTEST_XDIST_WORKER_COUNT``). Returns the count set, or None when it was left alone (the
    user chose, or it was set before)."""
    global _configured
    if _configured:
        return None
    _configured = True
    environ = os.environ if environ is None else environ
    workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    threads = cpu_threads(usable_cpus(), busy_cpus(), workers, environ)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return threads
