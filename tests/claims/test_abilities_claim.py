"""abilities.no_uniform_vision_gain: the verdict rule on planted stage tables, and end to end."""

from __future__ import annotations

import pytest
from claim_helpers import run, scores_at, small

from vlmdiag.claims import all_claims
from vlmdiag.measure.tables import AbilityTable
from vlmdiag.regions import regions_for

CLAIM = "abilities.no_uniform_vision_gain"
def table(*stages) -> AbilityTable:
    labels = ("Base", "IN", "RL")[3 - len(stages):]
    return AbilityTable({label: scores_at(rates) for label, rates in zip(labels, stages)})


def judge(m, shipped):
    return all_claims()[CLAIM].judge(m, regions_for("paper", 6), shipped.get(CLAIM))


R = lambda v, r, t: {"Mvis": v, "Mv2r": r, "Mrea": t}  # noqa: E731


def test_a_gain_without_vision_gain_is_found(shipped):
    out = judge(table(R(0.5, 0.3, 0.3), R(0.5, 0.6, 0.6)), shipped)
    assert out.verdict == "reproduced" and "no clear vision gain" in out.reason
    assert out.metrics["scores"]["RL"]["Mv2r"] == pytest.approx(0.6)


def test_a_clear_vision_gain_without_origin_is_not_the_claim(shipped):
    assert judge(table(R(0.3, 0.3, 0.3), R(0.7, 0.6, 0.6)), shipped).verdict == "not_reproduced"


def test_a_decline_across_stages_is_non_monotone(shipped):
    out = judge(table(R(0.6, 0.2, 0.2), R(0.2, 0.4, 0.4), R(0.7, 0.7, 0.7)), shipped)
    assert out.verdict == "reproduced" and out.metrics["non_monotone"] is True
    assert out.metrics["no_vision_gain"] is False


def test_uniform_monotone_gains_are_not_the_claim(shipped):
    out = judge(table(R(0.1, 0.1, 0.1), R(0.4, 0.4, 0.4), R(0.8, 0.8, 0.8)), shipped)
    assert out.verdict == "not_reproduced" and out.metrics["non_monotone"] is False


def test_without_any_RL_gain_there_is_nothing_to_explain(shipped):
    out = judge(table(R(0.0, 0.0, 0.0), R(0.0, 0.0, 0.0)), shipped)
    assert out.verdict == "inconclusive" and "no resolved Mv2r/Mrea gain" in out.reason


def test_small_differences_are_inconclusive(shipped):
    assert judge(table(R(0.5, 0.5, 0.5), R(0.56, 0.5, 0.5)), shipped).verdict == "inconclusive"


def test_weight_only_checkpoints_skip_with_a_reason(planted, shipped):
    result = run(CLAIM, planted("paper"), shipped.get(CLAIM), origin=True)
    assert result.verdict == "skipped" and "tokenizer" in result.reason


def test_end_to_end_on_tiny_models_with_origin(runnable, shipped):
    result = run(CLAIM, runnable, small(shipped, CLAIM), origin=True)
    assert result.verdict not in ("error", "skipped"), result.reason + result.metrics.get("traceback", "")
    assert result.metrics["stages"] == ["Base", "IN", "RL"]
    assert set(result.metrics["transitions"]["RL"]["Mvis"]) == {"TT", "TF", "FT", "FF", "N"}
