"""pytest-xdist workers: each is pinned to a GPU of its own and gets its share of the CPU cores;
the controller tells them how many GPUs there are and reports a worker's usage error once."""

from __future__ import annotations

import os
import re
import shutil
import sys
import warnings
from pathlib import Path

import pytest

from vlmdiag.plugin.session import STATE


def worker_cuda_visible_devices(worker_id: str | None, current: str | None, device_count: int) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` value for pytest-xdist worker ``worker_id`` (``gwN``): GPU
    ``N mod device_count``, so each worker has a GPU of its own (round robin when there are more
    workers than GPUs).

    Returns None, meaning leave the environment alone, outside a worker, without CUDA devices,
    or when ``current`` (the user's ``CUDA_VISIBLE_DEVICES``, even empty) is set.
    """
    if not worker_id or device_count < 1 or current is not None:
        return None
    match = re.fullmatch(r"gw(\d+)", worker_id)
    return str(int(match.group(1)) % device_count) if match else None


def worker_cpu_threads(worker_count: int, cpus: int, environ: dict) -> int | None:
    """Torch CPU threads for each of ``worker_count`` pytest-xdist workers sharing ``cpus`` cores:
    ``cpus // worker_count``, at least 1. Each torch process otherwise starts one thread per core,
    and two workers on two cores then run four spinning threads: the organism suite ran 3.6×
    slower with ``-n 2`` than without (bench/RESULTS.md, "Full suite").

    Returns None (leave torch's default) with fewer than two workers, or when the user set
    ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` in ``environ``.
    """
    if worker_count < 2 or environ.get("OMP_NUM_THREADS") or environ.get("MKL_NUM_THREADS"):
        return None
    return max(1, cpus // worker_count)


def _cuda_device_count() -> int:
    """CUDA devices visible to this process; 0 without an NVIDIA driver (torch is not even
    imported then)."""
    if not (Path("/proc/driver/nvidia").exists() or shutil.which("nvidia-smi")):
        return 0
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 — a broken driver means no GPU to pin
        return 0


def xdist_controller(config: pytest.Config) -> bool:
    return (getattr(config, "workerinput", None) is None and config.getoption("dist", "no") != "no"
            and bool(config.getoption("tx", None)))


def configure_worker(config: pytest.Config, workerinput: dict) -> None:
    """In an xdist worker: pin it to its GPU before torch initialises CUDA, and give it its share
    of the CPU cores."""
    pin = worker_cuda_visible_devices(workerinput.get("workerid"), os.environ.get("CUDA_VISIBLE_DEVICES"),
                                      int(workerinput.get("vlmdiag_cuda_devices", 0)))
    if pin is not None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            warnings.warn(f"vlmdiag: CUDA was initialised before worker {workerinput.get('workerid')} could be "
                          f"pinned to GPU {pin}; set CUDA_VISIBLE_DEVICES yourself", pytest.PytestConfigWarning)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = pin
    from vlmdiag.runtime.threads import usable_cpus

    threads = worker_cpu_threads(int(workerinput.get("workercount", 1)), usable_cpus(), dict(os.environ))
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """Controller side: tell each worker how many GPUs there are."""
    config = node.config
    if _CUDA_COUNT not in config.stash:
        config.stash[_CUDA_COUNT] = _cuda_device_count()
    node.workerinput["vlmdiag_cuda_devices"] = config.stash[_CUDA_COUNT]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """Controller side: a worker's usage error (no checkpoints given), to report once, and the
    probe items it drew (:func:`vlmdiag.plugin.probes.worker_draws`), for the report's ``probes``
    section."""
    output = getattr(node, "workeroutput", None) or {}
    message = output.get("vlmdiag_usage_error")
    state = node.config.stash.get(STATE, None)
    if message and state is not None:
        state.usage_error = message
    drawn = output.get("vlmdiag_probes")
    if drawn and state is not None:
        import json

        worker = str((getattr(node, "workerinput", None) or {}).get("workerid", len(state.worker_probes)))
        state.worker_probes[worker] = json.loads(drawn)


_CUDA_COUNT = pytest.StashKey[int]()
