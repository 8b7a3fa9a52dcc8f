"""Never harm a checkpoint or a report (issue 12), end to end: ``pytest diagnostics/test_updates.py
--base ... --rl ...`` in this process (pytester).

- The report, its plots folder and the results cache never land inside a checkpoint folder of the
  run (paths resolved, symlinks followed) and never replace anything but a regular file: exit 4 up
  front, one ``ERROR: <path>: ...`` line naming the path and the checkpoint, no byte of any
  checkpoint changed and nothing created in its folder (every file hashed before and after).
- A run that does not finish (Ctrl-C, an internal error, ``-x``) leaves the previous report and
  plots untouched and writes its results beside them, marked ``"complete": false``.
- Writing: a plots-only failure says so; files follow the umask.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from reliability_helpers import copy, error_line, roles, snapshot, untouched
from reliability_helpers import run_diagnostics as run

pytest_plugins = ["pytester"]

USAGE_ERROR = 4


# ----------------------------------------------------------------------------- outputs inside a checkpoint

def _hub_snapshot(triple, tmp_path) -> tuple[Path, Path]:
    """A Hugging Face cache layout: ``snapshots/x/model.safetensors`` links to ``blobs/w``."""
    snap, blob = tmp_path / "hub" / "snapshots" / "x", tmp_path / "hub" / "blobs" / "w"
    snap.mkdir(parents=True)
    blob.parent.mkdir()
    shutil.copy(triple["rl"] / "config.json", snap / "config.json")
    shutil.copy(triple["rl"] / "model.safetensors", blob)
    (snap / "model.safetensors").symlink_to(blob)
    return snap, blob


def _case(name, triple, tmp_path, monkeypatch):
    """(extra options, the path the ERROR line names, the checkpoint it names, folders to watch)."""
    out = tmp_path / "out"
    out.mkdir()
    rl = copy(triple["rl"], tmp_path / "rl")
    base, origin = triple["base"], triple["origin"]
    if name == "report over the weights":
        return [*roles(triple, rl=rl), f"--report-json={rl / 'model.safetensors'}"], rl / "model.safetensors", rl, [rl]
    if name == "report over config.json":
        return [*roles(triple, rl=rl), f"--report-json={rl / 'config.json'}"], rl / "config.json", rl, [rl]
    if name == "new report inside the folder":
        return [*roles(triple, rl=rl), f"--report-json={rl / 'r.json'}"], rl / "r.json", rl, [rl]
    if name == "report symlinked to the weights":
        (out / "r.json").symlink_to(rl / "model.safetensors")
        return [*roles(triple, rl=rl), f"--report-json={out / 'r.json'}"], out / "r.json", rl, [rl]
    if name == "report in a folder linked into the checkpoint":
        (out / "into").symlink_to(rl, target_is_directory=True)
        return [*roles(triple, rl=rl), f"--report-json={out / 'into' / 'r.json'}"], out / "into" / "r.json", rl, [rl]
    if name == "plots folder linked into the checkpoint":
        (out / "r_plots").symlink_to(rl, target_is_directory=True)
        return [*roles(triple, rl=rl), f"--report-json={out / 'r.json'}"], out / "r_plots", rl, [rl]
    if name == "report inside --origin":
        mine = copy(origin, tmp_path / "origin")
        return [*roles(triple, origin=mine), f"--report-json={mine / 'r.json'}"], mine / "r.json", mine, [mine]
    if name == "report inside --rl-frozen":
        frozen = copy(triple["rl"], tmp_path / "frozen")
        return ([*roles(triple), f"--rl-frozen=Late={frozen}", f"--report-json={frozen / 'r.json'}"],
                frozen / "r.json", frozen, [frozen])
    if name == "report inside a --recipe checkpoint":
        return ([f"--recipe=other={base},{rl},{origin}", f"--report-json={rl / 'r.json'}"], rl / "r.json", rl, [rl])
    if name == "report inside an organism: stage's folder":
        import vlmdiag.organism

        monkeypatch.setattr(vlmdiag.organism, "resolve_spec", lambda spec: rl if spec == "organism:rl" else None)
        return [*roles(triple, rl="organism:rl"), f"--report-json={rl / 'r.json'}"], rl / "r.json", rl, [rl]
    if name == "report over a hub snapshot's blob":
        snap, blob = _hub_snapshot(triple, tmp_path)
        return [*roles(triple, rl=snap), f"--report-json={blob}"], blob, snap, [snap, blob.parent]
    if name == "results cache inside the checkpoint":
        monkeypatch.setenv("VLMDIAG_CACHE_DIR", str(rl))
        return [*roles(triple, rl=rl), f"--report-json={out / 'r.json'}"], rl / "results", rl, [rl]
    if name == "results cache holding the checkpoint":
        holder = tmp_path / "cache"
        inner = copy(triple["rl"], holder / "results" / "weight_deltas")
        monkeypatch.setenv("VLMDIAG_CACHE_DIR", str(holder))
        return [*roles(triple, rl=inner), f"--report-json={out / 'r.json'}"], holder / "results", inner, [inner]
    raise AssertionError(name)


def _holds(case: str) -> str:
    return "holds" if case == "results cache holding the checkpoint" else "lies inside"


OUTPUT_CASES = ["report over the weights", "report over config.json", "new report inside the folder",
                "report symlinked to the weights", "report in a folder linked into the checkpoint",
                "plots folder linked into the checkpoint", "report inside --origin", "report inside --rl-frozen",
                "report inside a --recipe checkpoint", "report inside an organism: stage's folder",
                "report over a hub snapshot's blob", "results cache inside the checkpoint",
                "results cache holding the checkpoint"]


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_outputs_never_land_inside_a_checkpoint(case, triple, tmp_path, pytester, monkeypatch):
    args, path, checkpoint, watched = _case(case, triple, tmp_path, monkeypatch)
    with untouched(*watched, triple["base"], triple["origin"]):
        code, out = run(pytester, *args)
    line = error_line(out)
    assert code == USAGE_ERROR, out
    assert line.startswith(f"ERROR: {path}: ") and f"{_holds(case)} the checkpoint {checkpoint}; " in line, line
    assert "never writes into a checkpoint folder" in line
    assert (tmp_path / "out" / "r.json").is_symlink() or not (tmp_path / "out" / "r.json").exists()


def test_the_same_run_with_the_report_elsewhere_writes_a_complete_report(triple, tmp_path, pytester):
    report = tmp_path / "r.json"
    with untouched(triple["rl"], triple["base"], triple["origin"]):
        code, out = run(pytester, *roles(triple), f"--report-json={report}")
    assert code == 0, out
    assert json.loads(report.read_text())["complete"] is True
    assert f"report: {report}" in out


# ----------------------------------------------------------------------------- not a regular file

def _device(path: Path) -> bool:
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
        return True
    except (PermissionError, AttributeError):
        return False


@pytest.mark.parametrize("kind", ["FIFO", "device node", "symlink to a FIFO"])
def test_a_report_path_that_is_not_a_regular_file_is_refused(kind, triple, tmp_path, pytester):
    target = tmp_path / "r.json"
    if kind == "device node":
        if not _device(target):
            pytest.skip("cannot make a device node here (needs CAP_MKNOD)")
    elif kind == "FIFO":
        os.mkfifo(target)
    else:
        os.mkfifo(tmp_path / "fifo")
        target.symlink_to(tmp_path / "fifo")
    before = snapshot(tmp_path)
    code, out = run(pytester, *roles(triple), f"--report-json={target}")
    line = error_line(out)
    assert code == USAGE_ERROR and line.startswith(f"ERROR: {target}: --report-json is a ")
    assert ("FIFO" if "FIFO" in kind else "character device") in line
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- interrupted or crashed runs

class Interrupt:
    """Ctrl-C while the second claim runs."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item):
        if "orders_of_magnitude" in item.name:
            raise KeyboardInterrupt


class Crash:
    """An internal error (a bug in a plugin) as the second claim starts."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid, location):
        if "orders_of_magnitude" in nodeid:
            raise RuntimeError("a plugin bug")


@pytest.mark.parametrize("fault, code, words", [(Interrupt, 2, "was interrupted"),
                                                 (Crash, 3, "crashed (internal error)")], ids=["ctrl-c", "crash"])
def test_an_unfinished_run_leaves_the_previous_report_and_writes_beside_it(fault, code, words, triple, tmp_path,
                                                                            pytester):
    report = tmp_path / "r.json"
    report.write_text('{"old": true}')
    (tmp_path / "r_plots").mkdir()
    (tmp_path / "r_plots" / "old.png").write_bytes(b"old plot")
    before = snapshot(tmp_path)
    with untouched(triple["rl"], triple["base"], triple["origin"]):
        got, out = run(pytester, *roles(triple), f"--report-json={report}", plugins=[fault()])
    assert got == code, out
    beside = tmp_path / "r.incomplete.json"
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k not in (".", beside.name)} == {
        k: v for k, v in before.items() if k != "."}  # the old report and plots, byte for byte
    partial = json.loads(beside.read_text())
    assert partial["complete"] is False and [c["id"] for c in partial["claims"]] == ["updates.energy_mid"]
    assert f"the run {words}: the previous report {report} is untouched" in out, out
    assert f"are in {beside}, marked \"complete\": false" in out


def test_a_run_stopped_by_maxfail_leaves_the_previous_report(planted, tmp_path, pytester):
    """``-x``: the gated energy claim fails on uniform updates, and the other claims never run."""
    report = tmp_path / "r.json"
    report.write_text('{"old": true}')
    code, out = run(pytester, *roles(planted("uniform")), f"--report-json={report}", "-x")
    assert code == 1 and json.loads(report.read_text()) == {"old": True}, out
    partial = json.loads((tmp_path / "r.incomplete.json").read_text())
    assert partial["complete"] is False and [c["verdict"] for c in partial["claims"]] == ["not_reproduced"]
    assert "the run stopped early (stopping after 1 failures): the previous report" in out, out


def test_a_deeply_nested_thresholds_file_is_one_line_and_keeps_the_report(triple, tmp_path, pytester):
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("schema_version: 1\nclaims: " + "[" * 5000 + "]" * 5000 + "\n")
    report = tmp_path / "r.json"
    report.write_text('{"old": true}')
    code, out = run(pytester, *roles(triple), f"--thresholds={thresholds}", f"--report-json={report}")
    assert code == USAGE_ERROR and f"ERROR: {thresholds}: nested too deeply" in error_line(out), out
    assert json.loads(report.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "thresholds.yaml"]


# ----------------------------------------------------------------------------- writing the report

class PlotsBlocked:
    """Something takes the plots folder's name after the checks (a file where the folder goes)."""

    def __init__(self, folder: Path):
        self.folder = folder

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session):
        self.folder.write_text("not a folder")


def test_when_only_the_plots_fail_the_message_says_the_report_was_written(triple, tmp_path, pytester):
    report = tmp_path / "r.json"
    code, out = run(pytester, *roles(triple), f"--report-json={report}", plugins=[PlotsBlocked(tmp_path / "r_plots")])
    assert code == USAGE_ERROR, out
    assert json.loads(report.read_text())["complete"] is True
    line = error_line(out)
    assert line == (f"ERROR: --report-json {report}: the report was written, but not its plots: cannot write "
                    f"{tmp_path / 'r_plots'} (File exists)"), line


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_reports_plots_and_cache_entries_follow_the_umask(triple, tmp_path, pytester, monkeypatch, umask_027):
    monkeypatch.setenv("VLMDIAG_CACHE_DIR", str(tmp_path / "cache"))
    report = tmp_path / "out" / "r.json"
    report.parent.mkdir()
    code, out = run(pytester, *roles(triple), f"--report-json={report}")
    assert code == 0, out
    written = [report, *(tmp_path / "out" / "r_plots").iterdir(), *(tmp_path / "cache" / "results").rglob("*.json")]
    assert len(written) > 3 and {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o640}
    report.chmod(0o604)  # an existing report keeps the mode its owner gave it
    code, out = run(pytester, *roles(triple), f"--report-json={report}")
    assert code == 0 and stat.S_IMODE(report.stat().st_mode) == 0o604
