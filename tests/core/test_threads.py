"""Torch CPU threads on a busy machine (vlmdiag.runtime.threads): the cores free now, shared
among xdist workers; the user's OMP_NUM_THREADS / MKL_NUM_THREADS win."""

import subprocess
import sys

import pytest

from vlmdiag.runtime.threads import busy_cpus, cpu_threads


@pytest.mark.parametrize("cpus, busy, workers, environ, expected", [
    (2, 0.0, 1, {}, 2),      # quiet: one per core, torch's own default
    (2, 1.0, 1, {}, 1),      # one CPU-bound neighbour on two cores
    (2, 7.0, 1, {}, 1),      # a crowded machine: never zero
    (16, 3.4, 1, {}, 12),    # whole free cores only
    (16, 0.0, 2, {}, 8),     # xdist workers share the free cores
    (16, 4.0, 3, {}, 4),
    (2, 0.0, 1, {"OMP_NUM_THREADS": "2"}, None),  # the user chose
    (2, 5.0, 1, {"MKL_NUM_THREADS": "4"}, None),
])
def test_threads_fit_the_free_cores(cpus, busy, workers, environ, expected):
    assert cpu_threads(cpus, busy, workers, environ) == expected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/loadavg")
def test_a_spinning_neighbour_is_seen_as_a_busy_core():
    import time

    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert busy_cpus() >= 1.0  # the neighbour is always runnable
    finally:
        neighbour.kill()
        neighbour.wait()


def test_the_first_model_load_sets_the_threads_once_and_the_user_wins(tmp_path):
    code = ("import torch\nfrom vlmdiag.runtime import threads\n"
            "torch.set_num_threads(7)\n"
            "print(threads.configure_cpu_threads({'OMP_NUM_THREADS': '3'}), torch.get_num_threads())\n"
            "threads._configured = False\n"
            "n = threads.configure_cpu_threads({})\n"
            "print(n == torch.get_num_threads(), 1 <= n <= threads.usable_cpus(), threads.configure_cpu_threads({}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["None", "7", "True", "True", "None"], out.stdout + out.stderr
