"""--probes and --log-samples through pytest: a bad suite is a usage error up front, the header
names the suite, the report has a probes section, the samples folder is never a checkpoint's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _pytest(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:benchmark", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


ROOT = Path(__file__).resolve().parents[2]


def test_bad_suite_and_samples_folder_are_usage_errors(planted, tmp_path):
    paths = planted("paper")
    code, out = _pytest("--base", paths["base"], "--rl", paths["rl"], "--probes", "bogus", cwd=ROOT)
    assert code == 4 and "no probe suite 'bogus'" in out, out
    assert "Traceback" not in out   # a malformed manifest takes the same path (ProbeError, file:line)
    code, out = _pytest("--base", paths["base"], "--rl", paths["rl"], "--log-samples", Path(paths["base"]) / "s",
                        "-k", "test_updates", cwd=ROOT)
    assert code == 4 and "--log-samples lies inside the checkpoint" in out, out


def test_header_and_report_section(planted, tmp_path):
    paths = planted("paper")
    report = tmp_path / "r.json"
    code, out = _pytest("--base", paths["base"], "--rl", paths["rl"], "--probes", "synthetic:preset=small",
                        "--report-json", report, "-k", "test_updates", cwd=ROOT)
    assert code == 0, out
    assert "vlmdiag probes: synthetic (preset small; answer format boxed; up to 1024 new tokens)" in out
    section = json.loads(report.read_text())["probes"]
    assert section["name"] == "synthetic" and section["source"]["preset"] == "small"


def test_the_python_api_passes_probes_and_log_samples(planted, tmp_path):
    import pytest

    import vlmdiag
    from vlmdiag.errors import UsageError

    paths = planted("paper")
    with pytest.raises(UsageError, match="no probe suite 'bogus'"):
        vlmdiag.run(paths["base"], paths["rl"], claims=["updates.energy_mid"], probes="bogus")
    with pytest.raises(UsageError, match="--log-samples lies inside the checkpoint"):
        vlmdiag.run(paths["base"], paths["rl"], claims=["updates.energy_mid"], log_samples=Path(paths["base"]) / "s")
    report = vlmdiag.run(paths["base"], paths["rl"], origin=paths["origin"], claims=["updates.energy_mid"],
                         probes="synthetic:preset=small,answer_format=think_answer", use_cache=False)
    assert report["probes"]["name"] == "synthetic" and report["probes"]["answer_format"] == "think_answer"
