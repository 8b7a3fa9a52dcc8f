"""Fault containment (issue 7): a claim that raises — out of memory included — becomes an ``error``
verdict with its reason while the other claims run and the JSON report is still written; an
interrupt (Ctrl-C) during the report write leaves the old report or none, never half of one, and
no temporary file."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from vlmdiag.claims import run_claim
from vlmdiag.runner import RecipeCheckpoints as Recipe
from vlmdiag.claims.registry import Claim, ClaimThresholds, Outcome
from vlmdiag.report.document import write_atomic

from reliability_helpers import ROOT, run_subprocess

# ----------------------------------------------------------------------------- run_claim on a stub

class StubEvidence:
    """What :func:`run_claim` reads from an Evidence, with a measurement that raises ``error``."""

    def __init__(self, error: BaseException | None):
        self.recipe = Recipe("main", "base", "rl")
        self.num_llm_layers = 6
        self.error = error

    def has(self, need: str) -> bool:
        return True

    def measure(self, name, settings=None):
        if self.error is not None:
            raise self.error
        return 1.0


def _claim() -> Claim:
    def judge(measurement, regions, thresholds):
        return Outcome("reproduced", f"measured {measurement}", statistic=measurement)

    return Claim("test.contained", "a test claim", "§0", frozenset(), "anything", ClaimThresholds, judge)


THRESHOLDS = ClaimThresholds(gate=True, confidence=0.95)

RAISES = {
    "cuda out of memory": (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\n"
                                                       "(GPU 0; 79.1 GiB total capacity)"), "OutOfMemoryError"),
    "host out of memory": (MemoryError(), "MemoryError"),
    "a bug": (ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero"),
    "recursion": (RecursionError("maximum recursion depth exceeded"), "RecursionError"),
}


@pytest.mark.parametrize("case", RAISES, ids=list(RAISES))
def test_a_claim_that_raises_is_an_error_verdict_with_its_reason(case):
    error, expected = RAISES[case]
    result = run_claim(_claim(), StubEvidence(error), "paper", THRESHOLDS)
    assert result.verdict == "error" and result.reason.startswith(expected)
    assert "\n" not in result.reason  # the terminal shows it on one line
    assert type(error).__name__ in result.metrics["traceback"]
    if "memory" in case:
        assert "out of memory" in result.reason


def test_the_same_claim_without_the_fault_is_judged():
    result = run_claim(_claim(), StubEvidence(None), "paper", THRESHOLDS)
    assert result.verdict == "reproduced" and result.metrics["statistic"] == 1.0


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_interrupts_are_not_swallowed(interrupt):
    with pytest.raises(interrupt):
        run_claim(_claim(), StubEvidence(interrupt()), "paper", THRESHOLDS)


# ----------------------------------------------------------------------------- a whole run with a failing claim

CONFTEST = '''
"""Registers a claim that runs out of memory while judging the real weight measurement."""
import torch
from vlmdiag.claims.registry import ClaimThresholds, claim


@claim("test.out_of_memory", statement="a claim that runs out of memory", source="test",
       measurement="weight_deltas", thresholds=ClaimThresholds)
def judge(measurement, regions, thresholds):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")
'''

DIAGNOSTICS = "import pytest\n" + "".join(f'''

@pytest.mark.claim("{claim}")
def test_{name}(diagnose, recipe):
    diagnose(recipe)
''' for name, claim in (("energy", "updates.energy_mid"), ("out_of_memory", "test.out_of_memory"),
                         ("size", "updates.rl_smaller_than_in")))


def _project(folder: Path, conftest: str, diagnostics: str = (ROOT / "diagnostics" / "test_updates.py").read_text(),
             extra_claim: str | None = None) -> Path:
    """A user project: ``conftest.py``, ``test_diagnostics.py`` and ``thresholds.yaml`` (vlmdiag's,
    plus ``extra_claim`` when given)."""
    folder.mkdir()
    (folder / "conftest.py").write_text(conftest)
    (folder / "test_diagnostics.py").write_text(diagnostics)
    thresholds = yaml.safe_load((ROOT / "thresholds.yaml").read_text())
    if extra_claim:
        thresholds["claims"][extra_claim] = {"gate": False, "confidence": 0.95}
    (folder / "thresholds.yaml").write_text(yaml.safe_dump(thresholds, sort_keys=False))
    return folder


def _run_project(project: Path, paths: dict, report: Path, cache: Path) -> tuple[int, str]:
    """``pytest test_diagnostics.py`` in ``project`` on ``paths``, writing ``report``."""
    return run_subprocess("test_diagnostics.py", f"--origin={paths['origin']}", f"--base={paths['base']}",
                          f"--rl={paths['rl']}", f"--report-json={report}", "-p", "no:cacheprovider",
                          cwd=project, env={"VLMDIAG_CACHE_DIR": str(cache)})


def test_an_out_of_memory_claim_fails_alone_and_the_report_is_written(planted, tmp_path):
    paths = planted("paper")
    project = _project(tmp_path / "project", CONFTEST, DIAGNOSTICS, extra_claim="test.out_of_memory")
    report = tmp_path / "out" / "report.json"
    report.parent.mkdir()
    code, out = _run_project(project, paths, report, tmp_path / "cache")
    assert code == 1 and "1 failed, 2 passed" in out, out
    verdicts = {c["id"]: c for c in json.loads(report.read_text())["claims"]}
    assert verdicts["test.out_of_memory"]["verdict"] == "error"
    assert verdicts["test.out_of_memory"]["reason"].startswith("OutOfMemoryError: CUDA out of memory")
    assert verdicts["updates.energy_mid"]["verdict"] == verdicts["updates.rl_smaller_than_in"]["verdict"] == "reproduced"
    # nothing but the report and its plots: no temporary file left behind
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.json", "report_plots"]
    assert not [p for p in (report.parent / "report_plots").iterdir() if p.suffix != ".png"]


# ----------------------------------------------------------------------------- Ctrl-C during the report write

class Interrupting:
    """A file object that writes ``limit`` bytes, then raises KeyboardInterrupt (Ctrl-C mid-write)."""

    def __init__(self, raw, limit: int):
        self.raw, self.limit = raw, limit

    def write(self, data: bytes) -> int:
        self.raw.write(data[:self.limit])
        self.raw.flush()
        raise KeyboardInterrupt

    def __getattr__(self, name):
        return getattr(self.raw, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.raw.close()


def _interrupt(monkeypatch, where: str):
    real_fdopen = os.fdopen
    if where == "write":
        monkeypatch.setattr(os, "fdopen", lambda fd, mode: Interrupting(real_fdopen(fd, mode), 100))
    else:  # "fsync" or "replace": the data is complete in the temporary file, not yet in place
        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(os, where, interrupted)


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
@pytest.mark.parametrize("old", [True, False], ids=["old-report", "no-report"])
def test_interrupted_report_write_leaves_the_old_report_or_none(where, old, tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    if old:
        target.write_text('{"old": true}')
    new = json.dumps({"claims": ["x" * 10_000]})
    with monkeypatch.context() as patch:
        _interrupt(patch, where)
        with pytest.raises(KeyboardInterrupt):
            write_atomic(target, new)
    assert [p.name for p in tmp_path.iterdir()] == (["report.json"] if old else [])  # no temporary file
    if old:
        assert json.loads(target.read_text()) == {"old": True}
    write_atomic(target, new)  # and the next write goes through
    assert target.read_text() == new and [p.name for p in tmp_path.iterdir()] == ["report.json"]


INTERRUPTING_CONFTEST = '''
"""Ctrl-C arrives while vlmdiag writes the JSON report (inside its fsync)."""
import os
import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    def interrupted(fd):
        raise KeyboardInterrupt

    os.fsync = interrupted
'''


def test_ctrl_c_during_a_real_runs_report_write_keeps_the_old_report(planted, tmp_path):
    paths = planted("paper")
    project = _project(tmp_path / "project", textwrap.dedent(INTERRUPTING_CONFTEST))
    report = tmp_path / "out" / "report.json"
    report.parent.mkdir()
    report.write_text('{"old": true}')
    code, out = _run_project(project, paths, report, tmp_path / "cache")
    assert code != 0 and "KeyboardInterrupt" in out, out
    assert json.loads(report.read_text()) == {"old": True}
    assert [p.name for p in report.parent.iterdir()] == ["report.json"]


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_interrupted_cache_write_leaves_no_entry_or_the_old_one(where, tmp_path, monkeypatch):
    """The results cache (``vlmdiag.cache``): Ctrl-C while storing a measurement leaves the old
    entry (or none, so the next run measures again) and no temporary file."""
    import numpy as np

    from vlmdiag.cache import ResultsCache

    cache = ResultsCache(tmp_path)
    material = {"measurement": "weight_deltas", "checkpoints": {"base": "a", "rl": "b"}}
    old, new = {"ratio": np.arange(4.0)}, {"ratio": np.arange(4.0) * 2}
    cache.put("weight_deltas", material, old)
    with monkeypatch.context() as patch:
        _interrupt(patch, where)
        with pytest.raises(KeyboardInterrupt):
            cache.put("weight_deltas", material, new)
    hit, value = cache.get("weight_deltas", material)
    assert hit and np.array_equal(value["ratio"], old["ratio"])
    assert cache.info()["leftovers"] == 0 and len(cache.entries()) == 1
    other = {**material, "checkpoints": {"base": "a", "rl": "c"}}
    with monkeypatch.context() as patch:
        _interrupt(patch, where)
        with pytest.raises(KeyboardInterrupt):
            cache.put("weight_deltas", other, new)
    assert cache.get("weight_deltas", other) == (False, None)
    assert cache.info()["leftovers"] == 0 and len(cache.entries()) == 1


VANISHING_CONFTEST = '''
"""The report folder disappears while the run goes on (a cleanup job, an unmounted disk)."""
import shutil
import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    shutil.rmtree({folder!r})
'''


def test_a_report_that_cannot_be_written_is_one_error_line_not_a_traceback(planted, tmp_path):
    paths = planted("paper")
    report = tmp_path / "out" / "report.json"
    report.parent.mkdir()
    project = _project(tmp_path / "project", VANISHING_CONFTEST.format(folder=str(report.parent)))
    code, out = _run_project(project, paths, report, tmp_path / "cache")
    assert code == 4 and "3 passed" in out, out  # the claims passed; the missing report fails the run
    assert f"ERROR: --report-json {report}: cannot write the report (No such file or directory)" in out
    assert "Traceback" not in out
