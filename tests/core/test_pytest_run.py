"""The user's view: `pytest --base ... --rl ...` in a subprocess, its exit code, output and reports."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pytest_runs import options, run_pytest

ROOT = Path(__file__).resolve().parents[2]
UPDATES = "diagnostics/test_updates.py"  # the weight claims: runnable on planted triples without probes


def test_reproducing_recipe_passes_and_writes_json_plots_and_junit(planted, tmp_path):
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    code, out = run_pytest(UPDATES, *options(planted("paper")), f"--report-json={report}", f"--junitxml={junit}")
    assert code == 0, out
    assert "updates.energy_mid" in out and "reproduced" in out
    data = json.loads(report.read_text())
    assert data["schema_version"] == 2
    assert {"environment", "checkpoints", "regions", "claims"} <= set(data)
    assert len(data["claims"]) == 3
    assert {c["id"] for c in data["claims"]} == {"updates.energy_mid", "updates.rl_smaller_than_in",
                                                 "updates.rl_steeper_mid_late"}
    for claim in data["claims"]:
        assert claim["recipe"] == "main" and claim["verdict"] == "reproduced"
        assert {"id", "recipe", "verdict", "metrics", "reason"} <= set(claim)
    fingerprints = {role: c["fingerprint"] for role, c in data["checkpoints"]["main"].items()}
    assert len(set(fingerprints.values())) == 3
    assert len(list((tmp_path / "report_plots").glob("*.png"))) == 3
    properties = {p.get("name") for p in ET.parse(junit).iter("property")}  # suite-level under xunit2
    assert {"vlmdiag updates.energy_mid[main] verdict", "vlmdiag updates.energy_mid[main] statistic"} <= properties


def test_gated_claim_not_reproduced_fails_unless_report_only(planted, tmp_path):
    args = options(planted("inverted"))
    code, out = run_pytest(UPDATES, *args)
    assert code == 1 and "2 failed, 1 xfailed" in out, out  # the non-gated not_reproduced: xfail
    code, out = run_pytest(UPDATES, *args, "--report-only", f"--report-json={tmp_path / 'r.json'}")
    assert code == 0, out
    verdicts = {c["id"]: c["verdict"] for c in json.loads((tmp_path / "r.json").read_text())["claims"]}
    assert set(verdicts.values()) == {"not_reproduced"}


def test_several_recipes_make_a_matrix(planted, tmp_path):
    good, bad = planted("paper"), planted("inverted")
    recipes = [f"--recipe=good={good['base']},{good['rl']},{good['origin']}",
               f"--recipe=bad={bad['base']},{bad['rl']}"]
    code, out = run_pytest(UPDATES, *recipes, "--report-only", f"--report-json={tmp_path / 'r.json'}")
    assert code == 0, out
    claims = json.loads((tmp_path / "r.json").read_text())["claims"]
    table = {(c["recipe"], c["id"]): c["verdict"] for c in claims}
    assert table[("good", "updates.rl_smaller_than_in")] == "reproduced"
    assert table[("bad", "updates.rl_smaller_than_in")] == "skipped"
    assert table[("bad", "updates.energy_mid")] == "not_reproduced"


USAGE = {
    "no checkpoints": ([], "need checkpoints: pytest --base organism:in --rl organism:rl"),
    "missing folder": (["--base=/nonexistent/in", "--rl=/nonexistent/rl"], "/nonexistent/in: checkpoint folder does not exist"),
    "base without rl": (["--base=organism:in"], "--base and --rl go together"),
    "bad recipe": (["--recipe=oops"], "expected NAME=BASE,RL[,ORIGIN]"),
    "bad regions": (["--regions=middle"], "expected paper, thirds, localized, or two increasing cuts"),
    "report folder missing": (["--report-json=/nonexistent/dir/r.json"], "folder /nonexistent/dir does not exist"),
}


@pytest.mark.parametrize("case", USAGE, ids=list(USAGE))
def test_usage_errors_exit_4_with_one_clear_line(case):
    args, expected = USAGE[case]
    code, out = run_pytest(UPDATES, *args)
    assert code == 4, out
    assert expected in out


def test_regions_out_of_range_and_mismatched_checkpoints_are_usage_errors(planted):
    paths = planted("paper")
    code, out = run_pytest(*options(paths), "--regions=3,9")
    assert code == 4 and "do not split 6 decoder layers" in out
    deeper = planted("paper", num_layers=7)
    code, out = run_pytest(f"--base={paths['base']}", f"--rl={deeper['rl']}")
    assert code == 4 and "6 vs 7 LLM layers" in out


def test_help_lists_every_option():
    code, out = run_pytest("--help")
    assert code == 0
    for flag in ("--base", "--rl", "--origin", "--recipe", "--rl-frozen", "--regions", "--thresholds",
                 "--report-json", "--report-only", "--allow-pickle", "--trust-remote-code", "--sequential"):
        assert flag in out


def test_the_terminal_table_says_why_when_a_verdict_has_no_number():
    from vlmdiag.report.terminal import render

    without = {"id": "transplant.mid_late_carries_gain", "recipe": "main", "verdict": "inconclusive", "gate": False,
               "reason": "RL has no resolved Mv2r/Mrea gain over IN to carry", "metrics": {}}
    with_number = {"id": "updates.energy_mid", "recipe": "main", "verdict": "inconclusive", "gate": False,
                   "reason": "the interval straddles the threshold",
                   "metrics": {"statistic": 1.05, "interval": {"low": 0.9, "high": 1.2, "level": 0.95},
                               "threshold": 1.1}}
    text = render({"claims": [without, with_number], "regions": "paper"}, width=200, color=False)
    assert "transplant.mid_late_carries_gain [main] inconclusive: RL has no resolved Mv2r/Mrea gain" in text
    assert "1.05 [0.9, 1.2] vs 1.1" in text and "straddles" not in text  # the number speaks for itself
