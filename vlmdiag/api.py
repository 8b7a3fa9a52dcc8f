"""``vlmdiag.run(...)``: the diagnostics from Python (notebooks, training scripts). It runs the same
pytest session as the command line, in this process, and returns the report the JSON serialises."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path

from vlmdiag.errors import UsageError


class Report(dict):
    """The report of a run: the dict that ``--report-json`` writes (``schema_version``, ``claims``,
    ``checkpoints``, ``baseline``, ...), plus ``exit_code`` (pytest's: 0 passed, 1 a claim failed
    its test) and ``output`` (the session's terminal text when run quietly)."""

    exit_code: int = 0
    output: str = ""

    def verdicts(self) -> dict[tuple[str, str], str]:
        """``{(claim id, recipe): verdict}``."""
        return {(c["id"], c["recipe"]): c["verdict"] for c in self["claims"]}


def _diagnostics() -> Path:
    """The diagnostics pytest collects: shipped in the package when installed so, else the
    repository's ``diagnostics/``."""
    here = Path(__file__).resolve().parent
    for folder in (here / "diagnostics", here.parent / "diagnostics"):
        if folder.is_dir():
            return folder
    raise UsageError(f"vlmdiag.run: no diagnostics folder beside {here}")


class _SelectClaims:
    """Keep only the diagnostics of the requested claim ids."""

    def __init__(self, claims: set[str]):
        self.claims = claims

    def pytest_collection_modifyitems(self, config, items) -> None:
        keep = [i for i in items if any(m.args and m.args[0] in self.claims for m in i.iter_markers("claim"))]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


def run(base: str | None = None, rl: str | None = None, *, origin: str | None = None,
        recipes: Mapping[str, Sequence[str]] | None = None, rl_frozen: Mapping[str, str] | Iterable[str] = (),
        regions: str | None = None, thresholds: str | Path | None = None, claims: Iterable[str] | None = None,
        report_json: str | Path | None = None, baseline: str | Path | None = None,
        report_md: str | Path | None = None, fail_on_regression: bool = False, use_cache: bool = True,
        probes: str | None = None, log_samples: str | Path | None = None, sequential: bool = False,
        args: Sequence[str] = (), quiet: bool = True) -> Report:
    """Run vlmdiag's diagnostics on checkpoints and return the report.

    Args:
        base, rl, origin: as ``--base``, ``--rl``, ``--origin`` (folders, hub ids, ``organism:in``).
        recipes: ``{name: (base, rl[, origin])}``, as ``--recipe``.
        rl_frozen: ``{"Late": ckpt}`` or ``["grpo:Late=ckpt", ...]``, as ``--rl-frozen``.
        regions, thresholds, baseline, report_md, fail_on_regression: as the options of the same names.
        claims: claim ids to run (default: all).
        report_json: also write the JSON report (and its plots) there; without it the report is
            built in a temporary folder that is removed.
        probes: as ``--probes`` (``organism``, ``synthetic[:preset=...]``, ``paper:DIR``, a manifest
            ``PATH.yaml``; default: the run's default suite).
        log_samples: as ``--log-samples``: a folder for the per-sample JSON Lines records.
        sequential: True is ``--sequential`` (the inference claims in rounds of probe items).
        use_cache: False is ``--no-cache``. args: more pytest arguments (e.g. ``["-n", "2"]``).
        quiet: capture the session's terminal output into ``Report.output`` instead of printing it.

    Returns:
        :class:`Report`. Verdicts never raise: a gated claim that is not reproduced gives
        ``exit_code`` 1, like pytest.

    Raises:
        UsageError: what pytest reports as a usage error (exit code 4): a missing checkpoint, a
            malformed option, a baseline that cannot be compared, ... (the message is its line).
    """
    import pytest

    from vlmdiag.report.document import load_report

    argv = [str(_diagnostics()), "-p", "no:cacheprovider", "-p", "no:randomly"]
    if not any(e.name == "vlmdiag" for e in metadata.entry_points(group="pytest11")):
        argv += ["-p", "vlmdiag.plugin"]  # not installed: load the plugin by module name
    for flag, value in (("base", base), ("rl", rl), ("origin", origin), ("regions", regions),
                        ("thresholds", thresholds), ("baseline", baseline), ("report-md", report_md),
                        ("probes", probes), ("log-samples", log_samples)):
        if value is not None:
            argv.append(f"--{flag}={value}")
    for name, specs in (recipes or {}).items():
        argv.append(f"--recipe={name}={','.join(map(str, specs))}")
    frozen = [f"{k}={v}" for k, v in rl_frozen.items()] if isinstance(rl_frozen, Mapping) else list(rl_frozen)
    argv += [f"--rl-frozen={f}" for f in frozen]
    argv += ["--fail-on-regression"] if fail_on_regression else []
    argv += [] if use_cache else ["--no-cache"]
    argv += ["--sequential"] if sequential else []
    plugins = [_SelectClaims(set(claims))] if claims is not None else []
    with tempfile.TemporaryDirectory(prefix="vlmdiag-run-") as scratch:
        path = Path(report_json).absolute() if report_json else Path(scratch) / "report.json"
        argv += [f"--report-json={path}", *args]
        buffer = io.StringIO()
        quietly = (contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer)) if quiet else ()
        with contextlib.ExitStack() as stack:
            for context in quietly:
                stack.enter_context(context)
            code = int(pytest.main(argv, plugins=plugins))
        output = buffer.getvalue()
        if code == pytest.ExitCode.USAGE_ERROR or not path.is_file():
            lines = [line.removeprefix("ERROR: ") for line in output.splitlines() if line.startswith("ERROR:")]
            raise UsageError(lines[-1] if lines else f"vlmdiag.run: pytest exited {code} without a report"
                             + ("" if quiet else " (see its output above)"))
        report = Report(load_report(path))
    report.exit_code, report.output = code, output
    return report
