"""What CI sees: --baseline / --fail-on-regression, --report-md and $GITHUB_STEP_SUMMARY, --junitxml
read by a JUnit library (junitparser, a test-only dependency), --require-gated. Subprocess pytest
runs on planted weight triples (built in seconds)."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml, Skipped
from pytest_runs import options, run_pytest

ROOT = Path(__file__).resolve().parents[2]
UPDATES = "diagnostics/test_updates.py"
WEIGHT_CLAIMS = ("updates.energy_mid", "updates.rl_smaller_than_in", "updates.rl_steeper_mid_late")


@pytest.fixture(scope="module")
def release(planted, tmp_path_factory):
    """The "last release": a report of the paper scenario, every weight claim reproduced."""
    path = tmp_path_factory.mktemp("release") / "release.json"
    code, out = run_pytest(UPDATES, *options(planted("paper")), f"--report-json={path}")
    assert code == 0, out
    return path


def test_a_new_recipe_against_the_last_release_in_ci(planted, release, tmp_path):
    """The inverted scenario against the paper baseline, under -n 2, with every CI output at once."""
    report, md, junit, step = (tmp_path / n for n in ("run.json", "summary.md", "junit.xml", "step.md"))
    step.write_text("earlier step\n")
    code, out = run_pytest(UPDATES, "-n", "2", *options(planted("inverted")), f"--baseline={release}",
                           "--fail-on-regression", "--report-only", f"--report-json={report}",
                           f"--report-md={md}", f"--junitxml={junit}",
                           env={"GITHUB_STEP_SUMMARY": str(step), "COLUMNS": "200"})
    # --report-only fails no gate, but the regressions asked for by --fail-on-regression fail,
    # the non-gated updates.rl_steeper_mid_late included
    assert code == 1 and "3 failed" in out, out
    assert "regression against the baseline" in out and "PytestWarning" not in out
    assert "vs baseline" in out and "▼ reproduced → not_reproduced" in out  # the terminal column

    data = json.loads(report.read_text())
    assert data["schema_version"] == 2
    assert data["baseline"]["path"] == str(release) and data["baseline"]["schema_version"] == 2
    assert sorted(r["id"] for r in data["baseline"]["regressions"]) == sorted(WEIGHT_CLAIMS)
    for claim in data["claims"]:
        entry = claim["baseline"]
        assert (entry["baseline_verdict"], entry["verdict"], entry["change"]) == \
            ("reproduced", "not_reproduced", "regression")
        assert entry["statistic"]["moved"] and entry["statistic"]["against_claim"]
        assert entry["curves_outside"]  # the per-layer update norms differ beyond 5 %

    text = md.read_text()
    assert "**3 regressions**" in text and "| `updates.energy_mid` | main | ❌ **not_reproduced** (gated) |" in text
    assert "▼ reproduced → not_reproduced" in text
    assert "[figure](run_plots/updates.energy_mid__main.png)" in text and (tmp_path / "run_plots").is_dir()
    assert "✗ RL Mid concentration" in text  # why, condition by condition
    summary = step.read_text()
    assert summary.startswith("earlier step\n") and "## vlmdiag: 3 results" in summary  # appended

    suites = list(JUnitXml.fromfile(str(junit)))
    properties = {p.name: p.value for suite in suites for p in suite.properties()}
    for claim in WEIGHT_CLAIMS:
        assert properties[f"vlmdiag {claim}[main] verdict"] == "not_reproduced"
        assert float(properties[f"vlmdiag {claim}[main] statistic"])
        assert properties[f"vlmdiag {claim}[main] threshold"].startswith(("<", ">"))
        assert "reproduced → not_reproduced" in properties[f"vlmdiag {claim}[main] baseline"]
    assert properties["vlmdiag updates.rl_smaller_than_in[main] interval"].endswith("at 0.95")
    cases = [case for suite in suites for case in suite]
    assert len(cases) == 3 and all(isinstance(case.result[0], Failure) for case in cases)
    # xunit2 (pytest's default family) has no per-test properties
    assert not [p for case in ET.parse(junit).iter("testcase") for p in case.iter("property")]


def test_the_same_checkpoints_compare_unchanged(planted, release, tmp_path):
    code, out = run_pytest(UPDATES, *options(planted("paper")), f"--baseline={release}", "--fail-on-regression",
                           f"--report-json={tmp_path / 'r.json'}")
    assert code == 0, out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["baseline"]["regressions"] == [] and data["baseline"]["counts"] == {"same": 3}
    assert all(c["baseline"]["curves_outside"] == [] for c in data["claims"])
    assert "= reproduced" in out


def test_non_gated_failures_are_visible_to_junit_consumers(planted, tmp_path):
    junit = tmp_path / "junit.xml"
    code, out = run_pytest(UPDATES, *options(planted("inverted")), f"--junitxml={junit}", "-o", "junit_family=xunit1")
    assert code == 1 and "2 failed, 1 xfailed" in out, out
    assert "PytestWarning" not in out  # no record_property warnings under any family
    case = next(c for suite in JUnitXml.fromfile(str(junit)) for c in suite if "steeper" in c.name)
    (result,) = case.result
    assert isinstance(result, Skipped) and result.type == "pytest.xfail"
    assert result.message.startswith("updates.rl_steeper_mid_late [main]: not_reproduced: 15.3")
    # xunit1 allows per-test properties: each test carries its claim's numbers
    element = next(c for c in ET.parse(junit).iter("testcase") if "steeper" in c.get("name"))
    names = {p.get("name") for p in element.iter("property")}
    assert {"vlmdiag.verdict", "vlmdiag.statistic", "vlmdiag.interval", "vlmdiag.condition.1"} <= names


def test_require_gated_fails_a_gated_claim_that_could_not_run(planted):
    paths = planted("paper")
    code, out = run_pytest(UPDATES, *options(paths, origin=False))
    assert code == 0 and "2 skipped" in out, out   # updates.rl_smaller_than_in (gated) needs --origin
    code, out = run_pytest(UPDATES, *options(paths, origin=False), "--require-gated")
    assert code == 1 and "1 failed" in out and "--require-gated: a gated claim must run" in out, out


@pytest.mark.parametrize("args, message", [
    (["--regions=thirds"], "judged at --regions paper, this run at thirds"),
    (["--fail-on-regression"], None),
])
def test_a_baseline_that_cannot_be_compared_is_a_usage_error(planted, release, args, message):
    baseline = [f"--baseline={release}"] if message else []
    code, out = run_pytest(UPDATES, *options(planted("paper")), *baseline, *args)
    assert code == 4, out
    expected = f"--baseline {release}: {message}" if message else "--fail-on-regression compares with a baseline"
    assert [line for line in out.splitlines() if expected in line], out


def test_an_old_report_schema_is_refused_with_its_version(planted, release, tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**json.loads(release.read_text()), "schema_version": 0}))
    code, out = run_pytest(UPDATES, *options(planted("paper")), f"--baseline={old}")
    assert code == 4 and f"--baseline {old}: report schema_version 0 is older than" in out, out
