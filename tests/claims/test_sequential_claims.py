"""The sequential design of the inference claims (vlmdiag.sequential), by simulation with the
claims' own verdict rules on simulated per-item data (tests/claims/sequential_sims.py) and the
shipped ``sequential`` rule of thresholds.yaml:

(a) under a null effect (the effect exactly on the claim's threshold) the rate of a wrong
    ``reproduced`` over the whole procedure (up to 4 looks, Bonferroni level 0.9875 each) stays at
    or below 1 − confidence = 0.05 within Monte-Carlo error: rate <= 0.05 + 3·sqrt(0.05·0.95/trials);
(b) a planted effect of the stated size is found (``reproduced``) with at least the stated power,
    within 3 Monte-Carlo standard errors;
(c) RL an exact copy of IN: nothing is ``reproduced``, at any look.

Bigger runs of the same simulations: bench/calibrate_sequential.py (numbers in bench/RESULTS.md).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import sequential_sims as sims

from vlmdiag.claims import all_claims
from vlmdiag.claims.thresholds import SequentialRule
from vlmdiag.errors import NoProbeItems, ThresholdsError
from vlmdiag.sequential import STOPS, look_thresholds, plan_for, run_claim_sequential, run_looks

ALPHA = 0.05
RESAMPLES = 500  # bootstrap resamples per interval in the simulations (the shipped files say 2000)

#: claim -> (trials under the null, trials planted, stated power of the planted effect)
CASES = {
    "localization.reasoning_late": (400, 200, 0.9),       # paired difference; planted Late − Early = +0.08
    "localization.vision_early": (300, 200, 0.9),         # proportion; planted Early–Mid − Late = +0.25 vs 0.1
    "transplant.mid_late_carries_gain": (150, 100, 0.85),  # kept share; planted: keeps all of a +0.35 gain
}


def _thresholds(shipped, claim_id):
    return shipped.get(claim_id).model_copy(update={"bootstrap_resamples": RESAMPLES})


@pytest.mark.parametrize("claim_id", list(CASES))
def test_under_a_null_effect_wrong_reproduced_stays_within_the_confidence(shipped, claim_id):
    trials = CASES[claim_id][0]
    out = sims.run_sequential(claim_id, "null", _thresholds(shipped, claim_id), trials=trials,
                              rule=shipped.sequential)
    plan = out["plan"]
    assert len(plan.looks) == 4 and plan.level_per_look == pytest.approx(1 - ALPHA / 4)
    rate = out["reproduced"] / trials
    assert rate <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / trials), (claim_id, out)


@pytest.mark.parametrize("claim_id", list(CASES))
def test_a_planted_effect_is_found_with_the_stated_power(shipped, claim_id):
    _, trials, power = CASES[claim_id]
    out = sims.run_sequential(claim_id, "planted", _thresholds(shipped, claim_id), trials=trials, seed=1,
                              rule=shipped.sequential)
    rate = out["reproduced"] / trials
    assert rate >= power - 3 * math.sqrt(power * (1 - power) / trials), (claim_id, out)
    assert out["not_reproduced"] == 0
    assert out["mean_n"] < out["plan"].looks[-1]  # stopping early is what the rounds are for


def _copies(n_max, rng):
    """Per claim, ``at(n)`` of a recipe whose RL is an exact copy of IN (no change of any kind)."""
    items = sims.Items(n_max, rng)
    in_ = items.model((0.5, 0.3, 0.3))
    base = items.model((0.4, 0.2, 0.2))
    return {
        "attention.r2v_shift_mid_late": sims.attention(n_max, rng, "copy"),
        "transplant.mid_late_carries_gain": sims.transplant(n_max, rng, "copy"),
        "abilities.no_uniform_vision_gain": lambda n: sims.ability_table({"Base": base, "IN": in_, "RL": in_}, n),
        "freezing.late_necessary": lambda n: sims.ability_table({"IN": in_, "RL": in_, "RL-frozen-Late": in_}, n),
    }


def test_rl_a_copy_of_in_is_never_reproduced_at_any_look(shipped):
    claims = all_claims()
    ids = list(_copies(1, np.random.default_rng(0)))
    thresholds = {cid: shipped.get(cid).model_copy(update={"bootstrap_resamples": 200}) for cid in ids}
    plans = {cid: plan_for(claims[cid], thresholds[cid], shipped.sequential) for cid in ids}
    n_max = max(plan.looks[-1] for plan in plans.values())  # the shipped design's largest look
    for trial in range(5):
        for claim_id, at in _copies(n_max, np.random.default_rng(trial)).items():
            t, plan = thresholds[claim_id], plans[claim_id]
            seen = []
            outcome, taken, stop = run_looks(plan, lambda n, level: seen.append(
                claims[claim_id].judge(at(n), sims.REGIONS, look_thresholds(t, n, level))) or seen[-1])
            assert all(o.verdict != "reproduced" for o in seen), (claim_id, [o.reason for o in seen])
            assert stop in STOPS and [n for n, _ in taken] == list(plan.looks[:len(taken)])


# ------------------------------------------------------------------ the run's path (run_claim_sequential)


class Simulated:
    """A recipe's measurements as :func:`run_claim` reads them, from a simulator: ``measure``
    returns the first ``n_items`` items' measurement and records the N asked."""

    def __init__(self, at, note=None, error=None):
        self.recipe, self.num_llm_layers = SimpleNamespace(name="r"), sims.LAYERS
        self.at, self.note, self.error, self.asked = at, note, error, []

    def has(self, need):
        return True

    def measure(self, name, settings=None):
        self.asked.append(settings["n_items"])
        if self.error is not None:
            raise self.error
        return self.at(settings["n_items"])

    def probe_notes(self, name, settings=None):
        return (self.note,) if self.note else ()


def test_a_run_judges_look_by_look_and_records_the_looks(shipped):
    claim = all_claims()["localization.reasoning_late"]
    t = _thresholds(shipped, claim.id).model_copy(update={"n_items": 24})
    at = sims.reasoning_late(96, np.random.default_rng(3), "null")
    measured = Simulated(at)
    result = run_claim_sequential(claim, measured, "paper", t, shipped.sequential)
    record = result.sequential
    assert record["looks"] == [24, 48, 72, 96] and record["level_per_look"] == pytest.approx(0.9875)
    assert record["spending"] == "bonferroni" and record["confidence"] == t.confidence
    assert measured.asked == [look["n_items"] for look in record["looks_taken"]]
    assert record["n_used"] == measured.asked[-1] and record["stop"] in STOPS
    assert result.metrics["interval"]["level"] == pytest.approx(0.9875)
    assert "[sequential:" in result.reason and result.as_dict()["sequential"] == record
    # the same verdicts as the rule judged look by look, the same on a second run
    for look in record["looks_taken"]:
        alone = claim.judge(at(look["n_items"]), sims.REGIONS, look_thresholds(t, look["n_items"], 0.9875))
        assert alone.verdict == look["verdict"] and alone.statistic == look["statistic"]
    again = run_claim_sequential(claim, Simulated(at), "paper", t, shipped.sequential)
    assert again.sequential == record and again.verdict == result.verdict
    decided = run_claim_sequential(claim, Simulated(sims.reasoning_late(96, np.random.default_rng(3), "planted")),
                                   "paper", t, SequentialRule(looks=4, max_items=400))
    assert decided.verdict == "reproduced" and decided.sequential["stop"] == "decided"
    assert decided.sequential["n_used"] < 400


def test_a_run_stops_when_the_suite_is_exhausted_or_the_claim_cannot_be_judged(shipped):
    claim = all_claims()["localization.reasoning_late"]
    t = _thresholds(shipped, claim.id)
    at = sims.reasoning_late(96, np.random.default_rng(0), "null")
    unread = Simulated(lambda n: [SimpleNamespace(task=task, changed=np.zeros(sims.LAYERS + 1, bool),
                                                  run=SimpleNamespace(layers=np.arange(sims.LAYERS + 1), mode="from"))
                                  for task in sims.TASKS for _ in range(n)])  # no swap changes an answer
    vision = all_claims()["localization.vision_early"]
    assert run_claim_sequential(vision, unread, "paper", _thresholds(shipped, vision.id), shipped.sequential) \
        .sequential["stop"] == "max_items" and unread.asked == [8, 16, 24, 32]
    for note in ("swap ocr: capped at 8: the suite holds 8", "ocr: only 8 pairs in this folder"):  # any words
        capped = run_claim_sequential(vision, Simulated(unread.at, note=note),
                                      "paper", _thresholds(shipped, vision.id), shipped.sequential)
        assert capped.sequential["stop"] == "suite_exhausted" and len(capped.sequential["looks_taken"]) == 1
    broken = run_claim_sequential(claim, Simulated(at, error=RuntimeError("boom")), "paper", t, shipped.sequential)
    assert broken.verdict == "error" and broken.sequential["stop"] == "error"
    empty = run_claim_sequential(claim, Simulated(at, error=NoProbeItems("no text_math item")), "paper", t,
                                 shipped.sequential)
    assert empty.verdict == "skipped" and empty.sequential["stop"] == "skipped"


def test_claims_without_probe_items_are_judged_once(shipped):
    weight = all_claims()["updates.energy_mid"]
    assert plan_for(weight, shipped.get(weight.id), shipped.sequential) is None
    assert plan_for(all_claims()["localization.reasoning_late"], None, shipped.sequential) is None


def test_the_sequential_section_is_off_by_default_and_validated(shipped, tmp_path):
    from vlmdiag.claims import load_thresholds

    rule = shipped.sequential
    assert rule.enabled is False and rule.looks == 4 and rule.spending == "bonferroni"
    assert rule.for_claim("localization.vision_early", 8) == (4, 32)
    assert rule.for_claim("transplant.mid_late_carries_gain", 96) == (4, 384)
    assert SequentialRule(claims={"x": {"max_items": 128}}).for_claim("x", 16) == (4, 128)
    assert SequentialRule(looks=5, max_items=3).for_claim("x", 24) == (3, 3)
    source = (shipped.path).read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(source.replace("  claims: {}\n", "  claims: {no.such_claim: {max_items: 128}}\n"))
    with pytest.raises(ThresholdsError, match=r"bad.yaml:\d+: sequential.claims: 'no.such_claim'"):
        load_thresholds(bad)
    bad.write_text(source.replace("  looks: 4\n", "  looks: 0\n"))
    with pytest.raises(ThresholdsError, match="sequential.looks"):
        load_thresholds(bad)
    old = tmp_path / "old.yaml"  # a file written before the section existed: off
    old.write_text(source.split("# Sequential design")[0])
    assert load_thresholds(old).sequential.enabled is False


def test_a_base_model_right_on_no_item_stays_inconclusive_at_the_wider_per_look_level(shipped):
    """0/24 right: at 0.95 the Wilson upper bound (0.14) is under the 0.2 floor, at a look's 0.9875
    it is 0.21; every error increase is then 0 and its bootstrap [0, 0] must not decide."""
    claim = all_claims()["localization.reasoning_late"]
    never = lambda n: sims.SkipResult(np.arange(-1, sims.LAYERS), np.zeros((sims.LAYERS + 1, n), bool), (),  # noqa: E731
                                      tuple(f"i{i}" for i in range(n)))
    result = run_claim_sequential(claim, Simulated(never), "paper", _thresholds(shipped, claim.id), shipped.sequential)
    assert result.verdict == "inconclusive" and result.sequential["stop"] == "max_items"
    assert all("cannot cost accuracy" in claim.judge(never(n), sims.REGIONS, look_thresholds(
        _thresholds(shipped, claim.id), n, 0.9875)).reason for n in (24, 48))
