"""Report writing: the JSON report and plots (:class:`ReportWriter`), the Markdown summary
(:class:`SummaryWriter`) and the terminal summary, in the process that saw every result."""

from __future__ import annotations

import json
import os

import pytest

from vlmdiag.errors import VlmdiagError, printable
from vlmdiag.plugin.session import STATE, RunState


class ReportWriter:
    """Collects every result from the test reports and writes the JSON report and plots.

    Registered in ``pytest_configure``, so it holds the run state without a module global."""

    def __init__(self, state: RunState, config: pytest.Config):
        self.state, self.config = state, config
        self.finished = 0  # tests run to the end (under xdist, reported by the workers)

    @pytest.hookimpl
    def pytest_runtest_logstart(self, nodeid: str, location) -> None:
        self.state.current_nodeid = nodeid

    @pytest.hookimpl
    def pytest_runtest_logfinish(self, nodeid: str, location) -> None:
        self.finished += 1

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        text = getattr(report, "vlmdiag_result", None) if report.when == "call" else None
        if text is None:
            return
        result = json.loads(text)
        self.state.results.append(result)
        xml = self.config.stash.get(_junit_xml_key(), None)
        if xml is not None:  # valid under every junit_family, including xunit2, and with xdist
            for key, value in self.state.reports.properties(result):
                xml.add_global_property(f"vlmdiag {result['id']}[{result['recipe']}] {key}", value)

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from vlmdiag.report.safety import stop_reason

        state = self.state
        if state.usage_error and getattr(self.config, "workerinput", None) is None:
            session.exitstatus = exitstatus = pytest.ExitCode.USAGE_ERROR
        early = session.shouldfail or session.shouldstop  # -x, --maxfail: complete if nothing was left
        state.stopped = stopped = stop_reason(exitstatus, early if self.finished < session.testscollected else None)
        if getattr(self.config, "workerinput", None) is not None:
            if state._probe_suite is not None:  # what this worker drew, for the controller's probes section
                from vlmdiag.plugin.probes import worker_draws

                self.config.workeroutput["vlmdiag_probes"] = worker_draws(state._probe_suite)
            return
        if not state.report_json:
            return
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return
        if not state.results and not state.selected:
            return
        from vlmdiag.report.document import build_report
        from vlmdiag.report.safety import write_report

        try:
            cache = {"enabled": state.use_cache, "dir": str(state.results_cache.root) if state.use_cache else None}
            report = build_report(state.results, checkpoints=state.checkpoint_table(), regions=state.regions,
                                  thresholds=str(state.thresholds_path), cache=cache,
                                  baseline=state.reports.baseline_summary(state.results))
            from vlmdiag.plugin.probes import probes_section

            try:  # name, source, items per kind, content hash
                report["probes"] = probes_section(state.probe_suite, state.worker_probes)
            except VlmdiagError as error:
                report["probes"] = {"name": state.probes, "error": printable(error)}
            state.report_lines, problem = write_report(state.report_json, report, stopped=stopped,
                                                       plots=getattr(state.reports, "plots", True))
        except Exception as error:  # noqa: BLE001 — a report that cannot be built loses nothing old
            problem = (f"--report-json {state.report_json}: cannot build the report ({type(error).__name__}: "
                       f"{error}); nothing was written")
        if problem:
            _fail_run(session, state, problem)
        if exitstatus == pytest.ExitCode.INTERNAL_ERROR:  # pytest prints no terminal summary then
            reporter = self.config.pluginmanager.getplugin("terminalreporter")
            for line in [*state.report_lines, *([f"ERROR: {state.usage_error}"] if problem else [])]:
                if reporter is not None:
                    reporter.write_line(printable(line), red=True)


def _fail_run(session: pytest.Session, state: RunState, problem: str) -> None:
    """A report that could not be written: its one line ends the run, which exits as a usage error
    unless it failed already."""
    state.usage_error = printable(problem)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def _junit_xml_key():
    """Where ``--junitxml`` keeps its LogXML (pytest-internal: a key no run holds if it moves)."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:
        return pytest.StashKey[object]()
    return xml_key


class SummaryWriter:
    """Writes the Markdown summary (``--report-md``, ``$GITHUB_STEP_SUMMARY``) after the JSON
    report and its plots (``trylast``), in the process that saw every result."""

    def __init__(self, state: RunState, config: pytest.Config):
        self.state, self.config = state, config

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        state = self.state
        if getattr(self.config, "workerinput", None) is not None or not state.results:
            return
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return
        from vlmdiag.report.markdown import write_summaries

        if state.stopped is not None and state.reports.report_md is not None:
            # as with the JSON report: an unfinished run replaces no summary (its results are in
            # the .incomplete.json beside the report, when there is one)
            state.report_lines.append(f"vlmdiag: the run {state.stopped}: --report-md "
                                      f"{state.reports.report_md} was not written")
        problem = write_summaries(state.results, state.reports, regions=state.regions,
                                  report_json=state.report_json, environ=os.environ,
                                  write_md=state.stopped is None)
        if problem:
            _fail_run(session, state, problem)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and state.usage_error:
        terminalreporter.write_line(f"ERROR: {printable(state.usage_error)}", red=True)
    if state is not None and not state.results:
        for line in state.report_lines:
            terminalreporter.write_line(printable(line), yellow=True)
    if state is None or not state.results:
        return
    from vlmdiag.report.terminal import render

    terminalreporter.section("vlmdiag")
    report = {"claims": state.results, "regions": state.regions}
    terminalreporter.write(render(report, width=terminalreporter._tw.fullwidth, color=terminalreporter.hasmarkup))
    line = _cache_line(state)
    if line:
        terminalreporter.write_line(printable(line))
    for line in state.report_lines:
        terminalreporter.write_line(printable(line), yellow=not line.startswith("report: "))


def _cache_line(state: RunState) -> str | None:
    """``cache: 7 of 9 claims from .../results (--no-cache measures again)``."""
    measured = [r for r in state.results if (r.get("cache") or {}).get("measurements")]
    if not measured:
        return None
    if not state.use_cache:
        return "cache: off (--no-cache)"
    hits = sum(1 for r in measured if r["cache"]["from_cache"])
    return (f"cache: {hits} of {len(measured)} measured claims read their measurements from "
            f"{state.results_cache.root} (--no-cache measures again; `vlmdiag cache clear` empties it)")
