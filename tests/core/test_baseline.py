"""--baseline: the pure comparison of a result with an earlier report's (vlmdiag/report/baseline.py)."""

import json

import pytest

from vlmdiag.claims.thresholds import BaselineRule, load_thresholds
from vlmdiag.errors import ThresholdsError, UsageError
from vlmdiag.report.baseline import (check_comparable, compare_claim, curve_changes, load_baseline,
                                     statistic_change, verdict_change)

TOL = BaselineRule(rtol=0.05, atol=1e-6)


def result(verdict="reproduced", statistic=0.30, low=0.20, high=0.40, level=0.95, curve=(0.1, 0.2, 0.3),
           op=">", threshold=0.0, holds=True, layers=3):
    condition = {"name": "increase", "statistic": statistic, "interval": {"low": low, "high": high, "level": level},
                 "op": op, "threshold": threshold, "holds": holds}
    return {"id": "attention.r2v_shift_mid_late", "recipe": "main", "verdict": verdict, "gate": False,
            "reason": "...", "metrics": {"statistic": statistic, "threshold": threshold,
                                         "interval": {"low": low, "high": high, "level": level},
                                         "conditions": [condition], "increase_per_layer": list(curve),
                                         "regions": {"num_layers": layers, "cuts": [1, 2]}}}


@pytest.mark.parametrize("then, now, change", [
    ("reproduced", "reproduced", "same"),
    ("reproduced", "not_reproduced", "regression"),
    ("reproduced", "inconclusive", "regression"),
    ("inconclusive", "not_reproduced", "regression"),
    ("not_reproduced", "reproduced", "improvement"),
    ("reproduced", "error", "regression"),
    ("error", "not_reproduced", "changed"),
    ("reproduced", "skipped", "unmeasured"),
])
def test_verdict_changes(then, now, change):
    assert verdict_change(then, now) == change


def test_a_verdict_that_got_worse_is_a_regression_and_says_which_condition_flipped():
    entry = compare_claim(result("not_reproduced", 0.01, -0.05, 0.0, holds=False), result(), TOL)
    assert entry["change"] == "regression" and entry["regression"]
    assert entry["statistic"]["moved"] and entry["statistic"]["against_claim"]
    assert entry["conditions_changed"] == [{"name": "increase", "baseline": True, "current": False}]
    assert "reproduced → not_reproduced" in entry["why"] and "increase: ✓ → ✗" in entry["why"]


def test_the_statistic_is_read_against_this_runs_interval():
    inside = statistic_change(result(statistic=0.28, low=0.18, high=0.38), result(statistic=0.30), TOL)
    assert not inside["moved"] and inside["against_claim"] is False
    weaker = statistic_change(result(statistic=0.12, low=0.05, high=0.20), result(statistic=0.30), TOL)
    assert weaker["moved"] and weaker["against_claim"]          # same verdict, significantly weaker
    assert compare_claim(result(statistic=0.12, low=0.05, high=0.20), result(statistic=0.30), TOL)["regression"]
    stronger = statistic_change(result(statistic=0.60, low=0.50, high=0.70), result(statistic=0.30), TOL)
    assert stronger["moved"] and not stronger["against_claim"]
    below = statistic_change(result(statistic=-2.5, low=-2.6, high=-2.4, op="<", threshold=-1),
                             result(statistic=-2.0, op="<", threshold=-1), TOL)
    assert below["moved"] and not below["against_claim"]       # smaller is the claim's side


def test_an_exact_statistic_moves_only_beyond_the_tolerance():
    exact = dict(low=None, high=None, level=1.0)
    assert not statistic_change(result(statistic=2.05, **exact), result(statistic=2.0, **exact), TOL)["moved"]
    assert statistic_change(result(statistic=1.5, **exact), result(statistic=2.0, **exact), TOL)["against_claim"]


def test_curves_compare_layer_by_layer_within_the_tolerance():
    curves = curve_changes(result(curve=(0.1, 0.204, 0.5)), result(curve=(0.1, 0.2, 0.3)), TOL)
    assert curves["increase_per_layer"]["layers_outside"] == [2]
    assert curves["increase_per_layer"]["max_abs_diff"] == pytest.approx(0.2)
    assert curve_changes(result(curve=(0.1, None, 0.3)), result(curve=(0.1, 0.2, 0.3)), TOL)[
        "increase_per_layer"]["layers_outside"] == [1]
    loose = BaselineRule(rtol=1.0)
    assert curve_changes(result(curve=(0.1, 0.2, 0.5)), result(curve=(0.1, 0.2, 0.3)), loose)[
        "increase_per_layer"]["within"]
    # drift alone is reported, not a regression: a new recipe is expected to move the curves
    entry = compare_claim(result(curve=(0.1, 0.2, 0.9)), result(), TOL)
    assert entry["curves_outside"] == ["increase_per_layer"] and not entry["regression"]


def test_a_claim_missing_from_the_baseline_is_new():
    entry = compare_claim(result(), None, TOL)
    assert entry["change"] == "new" and not entry["regression"]


def report(*results, regions="paper", schema_version=2, **extra):
    return {"schema_version": schema_version, "regions": regions, "claims": list(results), **extra}


@pytest.mark.parametrize("baseline, message", [
    (report({**result(), "recipe": "release"}), "its recipes (release) share none with this run's (main)"),
    (report({**result(), "id": "old.claim"}), "none of its claims (old.claim) is a claim this vlmdiag knows"),
    (report(result(), regions="thirds"), "judged at --regions thirds, this run at paper; pass --regions=thirds"),
    (report(result(layers=28)), "recipe main: its checkpoints have 28 LLM layers, this run's 3"),
    (report(result(), probes={"name": "organism", "answer_format": "boxed"}), "another probe suite (differs in answer_format)"),
    (report(result(), probes={"name": "synthetic"}), "another probe suite (differs in name)"),
])
def test_a_meaningless_comparison_is_refused_in_one_line_naming_the_file(baseline, message):
    from vlmdiag.claims import all_claims

    with pytest.raises(UsageError) as error:
        check_comparable(baseline, "/ci/last-release.json", regions="paper", layers={"main": 3},
                         claim_ids=all_claims(), probes={"name": "organism", "answer_format": "none"})
    assert str(error.value).startswith("--baseline /ci/last-release.json: ") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_only_the_probes_identity_is_compared():
    """Items drawn, their hash and the source's paths follow the run (claims selected, where the
    data lies): a baseline differing only there is comparable."""
    from vlmdiag.claims import all_claims

    ours = {"name": "paper", "answer_format": "think", "max_new_tokens": 1024, "source": {"root": "/a"},
            "items": {"vqa@seed=0": 10}, "content_hash": "a"}
    theirs = {**ours, "source": {"root": "/b"}, "items": {"vqa@seed=0": 40}, "content_hash": "b"}
    check_comparable(report(result(), probes=theirs), "/ci/b.json", regions="paper", layers={"main": 3},
                     claim_ids=all_claims(), probes=ours)
    with pytest.raises(UsageError, match="differs in max_new_tokens"):
        check_comparable(report(result(), probes={**theirs, "max_new_tokens": 32}), "/ci/b.json", regions="paper",
                         layers={"main": 3}, claim_ids=all_claims(), probes=ours)


def test_report_schema_versions(tmp_path):
    path = tmp_path / "old.json"
    for version, readable in ((1, True), (2, True), (0, False), (3, False)):
        path.write_text(json.dumps(report(result(), schema_version=version)))
        if readable:
            assert load_baseline(path)["schema_version"] == version
            continue
        with pytest.raises(UsageError) as error:
            load_baseline(path)
        assert str(path) in str(error.value) and f"schema_version {version}" in str(error.value)


def test_tolerances_live_in_thresholds_yaml(tmp_path):
    shipped = load_thresholds("thresholds.yaml")
    assert shipped.baseline.rtol == 0.05 and shipped.baseline.for_claim("updates.energy_mid").rtol == 0.05
    text = open("thresholds.yaml").read()
    own = tmp_path / "thresholds.yaml"
    own.write_text(text.replace("  atol: 1.0e-6\n", "  atol: 1.0e-6\n  claims:\n    updates.energy_mid: {rtol: 0.2}\n"))
    assert load_thresholds(own).baseline.for_claim("updates.energy_mid").rtol == 0.2
    own.write_text(text.replace("  atol: 1.0e-6\n", "  atol: 1.0e-6\n  claims:\n    updates.energy: {rtol: 0.2}\n"))
    with pytest.raises(ThresholdsError, match="baseline.claims: unknown claim 'updates.energy'"):
        load_thresholds(own)
