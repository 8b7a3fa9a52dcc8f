"""Where a run's outputs may go, and writing its report so that nothing is lost.

- Up front (:func:`check_report_path`, :func:`check_outputs`): the report, its plots folder and the
  results cache never land inside a checkpoint folder of the run and never replace anything but a
  regular file; a problem is a usage error naming the path and the checkpoint.
- At the end (:func:`write_report`): a complete run replaces the report and its plots; an
  interrupted, crashed or early-stopped run leaves them untouched and writes its results, marked
  ``"complete": false``, beside them (:func:`incomplete_path`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from vlmdiag.errors import UsageError, printable
from vlmdiag.paths import check_holds_no_checkpoint, check_output, real


def plots_folder(report_json: Path) -> Path:
    """The folder of the per-layer plots of ``report_json``: ``<stem>_plots`` beside it."""
    return report_json.parent / f"{report_json.stem}_plots"


def incomplete_path(report_json: Path) -> Path:
    """Where an incomplete run's report goes: ``report.json`` -> ``report.incomplete.json``."""
    return report_json.with_name(f"{report_json.stem}.incomplete{report_json.suffix}")


def check_report_path(path: str | os.PathLike) -> Path:
    """``--report-json PATH`` before anything runs: the absolute path, whose real folder exists and
    is writable, naming a regular file or nothing (symlinks are followed).

    Raises:
        UsageError: a folder, a FIFO, a device..., or a missing or read-only folder.
    """
    path = Path(path).absolute()
    shown = printable(path)
    if path.is_dir():
        raise UsageError(f"--report-json {shown}: is a folder; name a file, e.g. "
                         f"--report-json={printable(path / 'report.json')}")
    check_output(path, "--report-json", (), fix="; name a regular file")
    folder = real(path).parent
    if not folder.is_dir():
        raise UsageError(f"--report-json {shown}: folder {printable(folder)} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--report-json {shown}: folder {printable(folder)} is not writable")
    return path


def check_outputs(report_json: Path | None, cache_root: Path | None, checkpoints: Iterable[str | os.PathLike]) -> None:
    """The run's outputs against its checkpoint folders (resolved, symlinks followed): the report,
    its plots folder and its incomplete twin, and the results cache, never inside one; the cache
    holds none (it creates subfolders).

    Raises:
        UnsafeOutputError (a UsageError): ``PATH: OPTION lies inside the checkpoint CKPT; ...``.
    """
    checkpoints = list(checkpoints)
    if report_json is not None:
        fix = "; write the report elsewhere"
        check_output(report_json, "--report-json", checkpoints, fix=fix)
        check_output(incomplete_path(report_json), "the report of an incomplete run", checkpoints, fix=fix)
        check_output(plots_folder(report_json), "the plots folder of --report-json", checkpoints, folder=True, fix=fix)
    if cache_root is not None:
        fix = "; set VLMDIAG_CACHE_DIR to another folder, or pass --no-cache"
        # A cache root that cannot be written only turns caching off (vlmdiag.cache): not an error here.
        check_output(cache_root, "the results cache", checkpoints, folder=True, file_ok=True, fix=fix)
        check_holds_no_checkpoint(cache_root, "the results cache", checkpoints, fix=fix)


def stop_reason(exitstatus: int, early: object = None) -> str | None:
    """Why a run did not finish (``was interrupted``, ``crashed``, ``stopped early``), or None when
    it ran every selected test. ``early``: pytest's reason for stopping before the last test
    (``-x``, ``--maxfail``: ``session.shouldfail``), when tests were left."""
    import pytest

    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return "was interrupted"
    if exitstatus == pytest.ExitCode.INTERNAL_ERROR:
        return "crashed (internal error)"
    if early:
        return f"stopped early ({printable(early)})"
    return None


def write_report(report_json: Path, report: dict, *, stopped: str | None,
                 plots: bool = True) -> tuple[list[str], str | None]:
    """Write a run's report: JSON, then plots (unless ``plots`` is False: ``--no-plots``), when the
    run is complete (``stopped`` None);
    otherwise only the JSON, to :func:`incomplete_path`, leaving the previous report and plots
    untouched. ``report["complete"]`` is set accordingly.

    Returns:
        (lines for the terminal, a one-line problem or None). Writing failures are problems,
        never exceptions: the run's verdicts stand, and the line says what was and was not written.
    """
    from vlmdiag.report.document import dumps, write_atomic
    from vlmdiag.report.plots import write_plots

    shown = printable(report_json)
    report["complete"] = stopped is None
    if stopped is not None:
        beside = incomplete_path(report_json)
        previous = (f"the previous report {shown} is untouched" if report_json.exists()
                    else f"no report was written to {shown}")
        if not report["claims"]:
            return [f"vlmdiag: the run {stopped} before any claim finished; {previous}"], None
        try:
            write_atomic(beside, dumps(report))
        except OSError as error:
            return [], f"--report-json {shown}: the run {stopped}; {previous}, and its partial results could not be " \
                       f"written to {printable(beside)} ({_why(error)})"
        return [f"vlmdiag: the run {stopped}: {previous}; the {len(report['claims'])} claim result(s) it finished "
                f"are in {printable(beside)}, marked \"complete\": false"], None
    try:
        write_atomic(report_json, dumps(report))
    except OSError as error:  # the folder vanished or the disk is full since the run began
        return [], f"--report-json {shown}: cannot write the report ({_why(error)})"
    if not plots:
        return [f"report: {shown}"], None
    folder = plots_folder(report_json)
    try:
        write_plots(report, folder)
    except Exception as error:  # noqa: BLE001 — a plot is never worth a lost report or a traceback
        return [f"report: {shown}"], (f"--report-json {shown}: the report was written, but not its plots: "
                                      f"cannot write {printable(folder)} ({_why(error)})")
    return [f"report: {shown}"], None


def _why(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return printable(error.strerror)
    return printable(str(error) if isinstance(error, OSError) else f"{type(error).__name__}: {error}")
