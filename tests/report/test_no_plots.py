"""``--no-plots``: the JSON report is written without its per-layer PNGs (write_report's ``plots``)."""

from __future__ import annotations

import json
from pathlib import Path

from vlmdiag.report.options import ReportOptions
from vlmdiag.report.safety import plots_folder, write_report

REPORT = json.loads((Path(__file__).parent / "data" / "organism_report.json").read_text())


def test_write_report_without_plots_writes_only_the_json(tmp_path):
    one = {**REPORT, "claims": [c for c in REPORT["claims"] if c["id"] == "updates.energy_mid"][:1]}
    path = tmp_path / "r.json"
    lines, problem = write_report(path, dict(one), stopped=None, plots=False)
    assert problem is None and lines == [f"report: {path}"]
    assert json.loads(path.read_text())["complete"] is True and not plots_folder(path).exists()
    write_report(path, dict(one), stopped=None)   # default: with plots
    assert [p.suffix for p in plots_folder(path).iterdir()] == [".png"]


def test_no_plots_option():
    assert ReportOptions.from_config(lambda dest: None).plots
    assert not ReportOptions.from_config(lambda dest: dest == "no_plots" or None).plots
