"""The suite under pytest-xdist: the same verdicts as one process, one report, one error line,
work grouped by checkpoint, one GPU per worker, the CPU cores shared between workers."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_runs import float_differences, run_pytest

from vlmdiag.claims import all_claims

from vlmdiag.plugin import worker_cpu_threads, worker_cuda_visible_devices

ROOT = Path(__file__).resolve().parents[2]


def outcome(report: dict) -> dict:
    """``{(recipe, claim): (verdict, metrics)}`` of a JSON report."""
    return {(c["recipe"], c["id"]): (c["verdict"], c["metrics"]) for c in report["claims"]}


def assert_same_outcomes(a: dict, b: dict) -> None:
    """The same verdicts, and the same metrics up to the last bits of fp32 rounding (the workers
    may run torch on another thread count than one process: see :func:`float_differences`)."""
    first, second = outcome(a), outcome(b)
    assert first.keys() == second.keys()
    assert {k: v for k, (v, _) in first.items()} == {k: v for k, (v, _) in second.items()}
    assert not (diffs := float_differences({str(k): m for k, (_, m) in first.items()},
                                           {str(k): m for k, (_, m) in second.items()})), diffs[:10]


def test_two_workers_give_the_verdicts_and_metrics_of_one_process(planted, tmp_path):
    paths, other = planted("paper"), planted("inverted")
    args = ["diagnostics", f"--base={paths['base']}", f"--rl={paths['rl']}", f"--origin={paths['origin']}",
            f"--recipe=inverted={other['base']},{other['rl']},{other['origin']}", "--report-only", "--no-cache"]
    code, serial_out = run_pytest(*args, f"--report-json={tmp_path / 'serial.json'}", "-n", "0")
    assert code == 0, serial_out
    code, out = run_pytest(*args, f"--report-json={tmp_path / 'parallel.json'}", "-n", "2", "-v")
    assert code == 0, out
    serial = json.loads((tmp_path / "serial.json").read_text())
    parallel = json.loads((tmp_path / "parallel.json").read_text())
    assert len(parallel["claims"]) == len(serial["claims"]) == 2 * len(all_claims())  # both recipes in one report
    assert_same_outcomes(parallel, serial)
    verdicts = {key: verdict for key, (verdict, _) in outcome(parallel).items()}
    assert verdicts[("main", "updates.energy_mid")] == "reproduced"
    assert verdicts[("inverted", "updates.energy_mid")] == "not_reproduced"

    # The controller writes the table and the report once.
    assert out.count("=== vlmdiag ===") == 1 or len(re.findall(r"=+ vlmdiag =+", out)) == 1
    assert out.count(f"report: {tmp_path / 'parallel.json'}") == 1
    # -n without --dist schedules whole (file, recipe) units: the five weight claims of a recipe (test_updates.py and test_structure.py)
    # run on one worker, which makes the recipe's weight pass once.
    assert "scheduling tests via DiagnosticScopeScheduling" in out
    workers = {}
    for worker, recipe in re.findall(r"\[(gw\d)\] \[\s*\d+%\] \w+ diagnostics/test_(?:updates|structure)\.py::\S+\[(\w+)\]", out):
        workers.setdefault(recipe, set()).add(worker)
    assert {r: len(w) for r, w in workers.items()} == {"main": 1, "inverted": 1}, out
    # test_structure.py's weight claims run in test_updates.py's unit: each recipe's weight pass is
    # made once, although --no-cache leaves no results cache to share it through.
    for recipe in ("main", "inverted"):
        assert len(re.findall(rf"\[gw\d\] vlmdiag: {recipe}: weight spectra \.\.\.", out)) == 1, out


@pytest.mark.parametrize("nodeid, scope", [
    ("diagnostics/test_updates.py::test_energy[main]", "diagnostics/test_updates.py[main]"),
    ("diagnostics/test_updates.py::test_energy[grpo-v2]", "diagnostics/test_updates.py[grpo-v2]"),
    ("diagnostics/test_structure.py::test_sparse[main]", "diagnostics/test_updates.py[main]"),
    ("site-packages/vlmdiag/diagnostics/test_structure.py::test_sparse[grpo]",
     "site-packages/vlmdiag/diagnostics/test_updates.py[grpo]"),
    ("test_structure.py::test_sparse[main]", "test_updates.py[main]"),
    ("diagnostics/test_x.py::TestA::test_b[main-3]", "diagnostics/test_x.py[main]"),
    ("diagnostics/test_x.py::test_b[3-main]", "diagnostics/test_x.py[main]"),
    ("tests/test_other.py::test_plain", "tests/test_other.py"),
    ("tests/test_other.py::test_param[7]", "tests/test_other.py"),
])
def test_work_units_are_a_diagnostics_file_and_a_recipe(nodeid, scope):
    from vlmdiag.plugin import diagnostic_scope

    assert diagnostic_scope(nodeid, ["main", "grpo", "grpo-v2"]) == scope


def test_bad_input_under_xdist_is_one_usage_error_not_a_crash_per_worker(planted):
    paths = planted("paper")
    code, out = run_pytest("diagnostics", "--base=/nonexistent/in", f"--rl={paths['rl']}", "-n", "2")
    assert code == 4, out
    assert out.count("/nonexistent/in: checkpoint folder does not exist") == 1
    assert "INTERNALERROR" not in out

    code, out = run_pytest("diagnostics", "-n", "2")
    assert code == 4, out
    assert out.count("need checkpoints") == 1
    assert "INTERNALERROR" not in out and "crashed" not in out


@pytest.mark.parametrize("worker, user, gpus, expected", [
    ("gw0", None, 2, "0"),
    ("gw1", None, 2, "1"),
    ("gw5", None, 4, "1"),  # more workers than GPUs: round robin
    ("gw3", None, 1, "0"),
    ("gw1", None, 0, None),  # no GPU: nothing to pin
    ("gw1", "2,3", 2, None),  # the user chose the devices
    ("gw1", "", 2, None),  # ... even "none"
    (None, None, 2, None),  # not an xdist worker
    ("master", None, 2, None),
])
def test_each_worker_gets_its_own_gpu_unless_the_user_chose(worker, user, gpus, expected):
    assert worker_cuda_visible_devices(worker, user, gpus) == expected


@pytest.mark.parametrize("workers, cpus, environ, expected", [
    (2, 2, {}, 1),
    (2, 16, {}, 8),
    (3, 16, {}, 5),
    (4, 2, {}, 1),  # more workers than cores: one thread each, never zero
    (1, 16, {}, None),  # one worker: torch's own default
    (0, 16, {}, None),
    (2, 16, {"OMP_NUM_THREADS": "3"}, None),  # the user chose
    (2, 16, {"MKL_NUM_THREADS": "3"}, None),
])
def test_workers_share_the_cpu_cores(workers, cpus, environ, expected):
    assert worker_cpu_threads(workers, cpus, environ) == expected


def test_each_worker_runs_torch_on_its_share_of_the_cores(tmp_path):
    (tmp_path / "test_threads.py").write_text(
        "import os, torch\n"
        "def test_a(): print('threads', os.environ['PYTEST_XDIST_WORKER'], torch.get_num_threads())\n"
        "def test_b(): print('threads', os.environ['PYTEST_XDIST_WORKER'], torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "-n", "2", "-rA",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_threads.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    seen = re.findall(r"threads (gw\d) (\d+)", proc.stdout)
    assert seen and all(int(n) == share for _, n in seen), proc.stdout


@pytest.mark.slow
def test_two_workers_give_the_verdicts_of_one_process_on_the_fast_organism(tmp_path):
    """Every claim, inference ones included (minutes: the suite runs twice)."""
    args = ["diagnostics", "--origin=organism:base", "--base=organism:in", "--rl=organism:rl",
            "--rl-frozen=Late=organism:rl-frozen-late", "--report-only", "--no-cache"]
    env = {"VLMDIAG_ORGANISM_RECIPE": "fast"}
    reports = {}
    for workers in ("0", "2"):
        path = tmp_path / f"n{workers}.json"
        code, out = run_pytest(*args, f"--report-json={path}", "-n", workers, env=env)
        assert code == 0, out
        reports[workers] = json.loads(path.read_text())
    assert len(reports["2"]["claims"]) == len(all_claims())
    assert_same_outcomes(reports["2"], reports["0"])
