"""What the report options decide during a run: ``--baseline``, ``--fail-on-regression``,
``--report-md``, ``--require-gated``, and how a claim's verdict becomes its test's outcome and its
JUnit properties. No pytest import: the plugin turns these decisions into pytest calls.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vlmdiag.errors import UsageError, printable
from vlmdiag.report import baseline as _baseline


def writable_file(option: str, value) -> Path:
    """An absolute path for a report file, checked before the run: not a folder nor anything but a
    regular file (:func:`vlmdiag.paths.check_output`), in a folder that exists and is writable.
    (Whether it lies in a checkpoint folder is checked once the checkpoints are open.)

    Raises:
        UsageError: one line naming ``option`` and the path (:func:`vlmdiag.errors.printable`).
    """
    from vlmdiag.paths import check_output

    path = Path(value).absolute()
    shown = printable(path)
    if path.is_dir():
        raise UsageError(f"{option} {shown}: is a folder; name a file, e.g. {option}={printable(path / 'report.md')}")
    check_output(path, option, (), fix="; name a regular file")
    if not path.parent.is_dir():
        raise UsageError(f"{option} {shown}: folder {printable(path.parent)} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"{option} {shown}: folder {printable(path.parent)} is not writable")
    return path


@dataclass
class ReportOptions:
    """The report options of one run (see each option's help)."""

    baseline_path: Path | None = None
    baseline: dict | None = None  # the loaded --baseline report
    fail_on_regression: bool = False
    report_md: Path | None = None
    require_gated: bool = False
    plots: bool = True  # per-layer PNGs beside --report-json (off: --no-plots)
    _index: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, value: Callable[[str], object]) -> ReportOptions:
        """From ``value(dest)`` (the option or its ini key).

        Raises:
            UsageError: an unreadable or incomparable-schema baseline, ``--fail-on-regression``
                without ``--baseline``, or a ``--report-md`` path that cannot be written.
        """
        out = cls(fail_on_regression=bool(value("fail_on_regression")), require_gated=bool(value("require_gated")),
                  plots=not value("no_plots"))
        if value("baseline"):
            out.baseline_path = Path(str(value("baseline"))).absolute()
            out.baseline = _baseline.load_baseline(out.baseline_path)
            out._index = _baseline.index(out.baseline)
        elif out.fail_on_regression:
            raise UsageError("--fail-on-regression compares with a baseline: pass --baseline=PATH (an earlier "
                             "--report-json report)")
        if value("report_md"):
            out.report_md = writable_file("--report-md", value("report_md"))
        return out

    def check_baseline(self, *, regions: str, layers: dict[str, int], probes=None) -> None:
        """:func:`vlmdiag.report.baseline.check_comparable` for this run (nothing without --baseline).
        ``probes()`` returns this run's ``probes`` section; it is called only when the baseline
        has one."""
        if self.baseline is None:
            return
        from vlmdiag.claims import all_claims

        section = probes() if probes is not None and self.baseline.get("probes") is not None else None
        _baseline.check_comparable(self.baseline, self.baseline_path, regions=regions, layers=layers,
                                   claim_ids=all_claims(), probes=section)

    def compare(self, data: dict, thresholds) -> None:
        """Add the claim's ``baseline`` entry to its result ``data`` (nothing without --baseline)."""
        if self.baseline is None:
            return
        then = self._index.get((data["id"], data["recipe"]))
        data["baseline"] = _baseline.compare_claim(data, then, thresholds.baseline.for_claim(data["id"]))

    def baseline_summary(self, results: list[dict]) -> dict | None:
        """The report's top-level ``baseline`` section, or None without --baseline."""
        if self.baseline is None:
            return None
        return _baseline.summary(results, self.baseline, self.baseline_path)

    def outcome(self, data: dict, *, report_only: bool) -> tuple[str, str] | None:
        """How the verdict in ``data`` ends its test: ``("fail" | "skip" | "xfail", message)``, or
        None for a plain pass.

        * fail: ``error``, a gated ``not_reproduced``, a gated ``skipped`` under
          ``--require-gated`` (none of these under ``--report-only``), and a regression against
          the baseline under ``--fail-on-regression`` (even under ``--report-only``: the user
          asked for it by name);
        * skip: ``skipped`` (an input it needs was not given);
        * xfail: a ``not_reproduced`` or ``inconclusive`` that does not fail (not gated, or
          ``--report-only``), so JUnit consumers show it as not passed (``<skipped
          type="pytest.xfail">`` with the reason) while the run still exits 0;
        * pass: ``reproduced``.
        """
        verdict, gate = data["verdict"], bool(data.get("gate"))
        label = f"{data['id']} [{data['recipe']}]"
        from vlmdiag.report.terminal import _effect

        effect = _effect(data)
        message = f"{label}: {verdict}{' (gated)' if gate else ''}: {effect + '; ' if effect else ''}{data.get('reason', '')}"
        entry = data.get("baseline") or {}
        if self.fail_on_regression and entry.get("regression"):
            return "fail", f"{label}: regression against the baseline {self.baseline_path}: {entry['why']}"
        if verdict == "skipped":
            if self.require_gated and gate and not report_only:
                return "fail", f"{message} [--require-gated: a gated claim must run]"
            return "skip", message
        if not report_only and (verdict == "error" or (verdict == "not_reproduced" and gate)):
            return "fail", message
        if verdict in ("not_reproduced", "inconclusive"):
            return "xfail", message
        return None

    @staticmethod
    def properties(data: dict) -> list[tuple[str, str]]:
        """The claim's JUnit properties, ``(name, text)``: verdict, gate, statistic, interval,
        threshold, each condition, robustness, the reason and the baseline change."""
        from vlmdiag.report.terminal import OPS, condition_text

        m = data.get("metrics") or {}
        interval = m.get("interval") or {}
        op = _baseline._op(data)
        out = [("verdict", data["verdict"]), ("gate", str(bool(data.get("gate"))).lower())]
        if m.get("statistic") is not None:
            out.append(("statistic", f"{m['statistic']:.6g}"))
        if interval.get("low") is not None and interval.get("level", 1) < 1:  # not for an exact statistic
            out.append(("interval", f"[{interval['low']:.6g}, {interval['high']:.6g}] at {interval.get('level', 1):g}"))
        if m.get("threshold") is not None:
            out.append(("threshold", f"{OPS.get(op, '') + ' ' if op else ''}{m['threshold']:g}"))
        for i, c in enumerate(m.get("conditions") or ()):
            out.append((f"condition.{i + 1}", condition_text(c)))
        if m.get("robust_to_cut") is not None:
            out.append(("robust_to_cut", str(m["robust_to_cut"]).lower()))
        out.append(("reason", data.get("reason", "")))
        if data.get("baseline"):
            out.append(("baseline", _baseline.cell_text(data["baseline"])))
        return out
