"""The progress display of the long measurement steps, wired to pytest's terminal reporter and
capture manager (or to stderr in an xdist worker)."""

from __future__ import annotations

import contextlib
import os
import sys

import pytest

from vlmdiag.plugin.session import STATE


def _step_progress(config: pytest.Config):
    """The progress display of the long measurement steps (:mod:`vlmdiag.report.progress`)."""
    from vlmdiag.report.progress import StepProgress, choose_mode

    worker = os.environ.get("PYTEST_XDIST_WORKER") if getattr(config, "workerinput", None) is not None else None
    reporter = config.pluginmanager.getplugin("terminalreporter")
    capman = config.pluginmanager.getplugin("capturemanager")
    suspend = capman.global_and_fixture_disabled if capman is not None else contextlib.nullcontext
    interactive = reporter is not None and bool(reporter.isatty) and reporter.hasmarkup
    mode = choose_mode(verbosity=config.get_verbosity(), worker=worker is not None, interactive=interactive)
    if worker is not None:
        # A worker's stdout is xdist's channel; its stderr is the terminal the controller runs in.
        def write_line(text: str) -> None:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

        return StepProgress(mode, write_line=write_line, suspend=suspend, prefix=f"[{worker}] ")
    if reporter is None:
        return StepProgress("off")

    def console():
        from rich.console import Console

        return Console(force_terminal=True, width=reporter._tw.fullwidth)

    def resume() -> None:
        # Without -v pytest writes a file's result letters after its path on one line: put
        # the path back so the letters that follow the step are not left on a line alone.
        nodeid = config.stash[STATE].current_nodeid
        if nodeid and config.get_verbosity() <= 0:
            fspath = config.rootpath / nodeid.split("::")[0]
            reporter.currentfspath = fspath
            reporter.write(os.path.relpath(fspath, reporter.startpath) + " ")

    return StepProgress(mode, write_line=reporter.write_line, console=console, suspend=suspend,
                        begin=reporter.ensure_newline, end=resume)


def pytest_sessionstart(session: pytest.Session) -> None:
    # After pytest_configure: the terminal reporter and the capture manager exist now.
    state = session.config.stash.get(STATE, None)
    if state is not None:
        state.progress = _step_progress(session.config)
