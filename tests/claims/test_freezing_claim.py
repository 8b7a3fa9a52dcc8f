"""freezing.late_necessary: the verdict rule on planted Table-3 scores, skips, and end to end."""

from __future__ import annotations

from claim_helpers import run, scores_at, small

from vlmdiag.claims import all_claims
from vlmdiag.measure.tables import AbilityTable
from vlmdiag.regions import regions_for

CLAIM = "freezing.late_necessary"


def table(frozen: dict[str, float], *, rl: float = 0.6) -> AbilityTable:
    """IN at 0.3 on Mv2r/Mrea, RL at ``rl``; each frozen run at its given rate."""
    at = lambda r: scores_at({"Mvis": 0.5, "Mv2r": r, "Mrea": r})  # noqa: E731
    return AbilityTable({"IN": at(0.3), "RL": at(rl), **{f"RL-frozen-{k}": at(v) for k, v in frozen.items()}})


def judge(m, shipped):
    return all_claims()[CLAIM].judge(m, regions_for("paper", 6), shipped.get(CLAIM))


def test_a_Late_frozen_run_that_loses_the_gain_is_found(shipped):
    out = judge(table({"Early": 0.6, "Late": 0.3}), shipped)
    assert out.verdict == "reproduced" and out.interval.high < 0.5  # keeps under half of RL's gain
    assert out.metrics["rl_gains"] == ["Mv2r", "Mrea"] and "Mv2r RL − RL-frozen-Late" in out.metrics["losses"]


def test_a_Late_frozen_run_that_keeps_the_gain_is_not_the_claim(shipped):
    assert judge(table({"Late": 0.6}), shipped).verdict == "not_reproduced"


def test_without_an_RL_gain_it_is_inconclusive(shipped):
    assert judge(table({"Late": 0.3}, rl=0.3), shipped).verdict == "inconclusive"


def test_only_an_Early_frozen_run_is_skipped_with_a_reason(shipped):
    out = judge(table({"Early": 0.3}), shipped)
    assert out.verdict == "skipped" and "Late=CKPT" in out.reason and "given: Early" in out.reason


def test_without_rl_frozen_it_is_skipped(runnable, shipped):
    result = run(CLAIM, runnable, shipped.get(CLAIM))
    assert result.verdict == "skipped" and "--rl-frozen" in result.reason


def test_weight_only_checkpoints_skip_with_a_reason(planted, shipped):
    paths = dict(planted("paper"), frozen_late=planted("paper")["rl"])
    result = run(CLAIM, paths, shipped.get(CLAIM), frozen=[("Late", "frozen_late")])
    assert result.verdict == "skipped" and "tokenizer" in result.reason


def test_end_to_end_on_tiny_models(runnable, shipped):
    result = run(CLAIM, runnable, small(shipped, CLAIM), frozen=[("Late", "frozen_late")])
    assert result.verdict not in ("error", "skipped"), result.reason + result.metrics.get("traceback", "")
    assert result.metrics["models"] == ["IN", "RL", "RL-frozen-Late"]
