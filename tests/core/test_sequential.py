"""The sequential design (vlmdiag.stats.SequentialPlan) by simulation: under a null effect the rate
of a wrong ``reproduced`` stays at or below 1 − confidence across looks (Monte-Carlo error allowed);
a planted effect of the targeted size is found with at least the power the plan states."""

import math

import numpy as np
import pytest

from vlmdiag.stats import SequentialPlan, bootstrap_interval, decide, n_max_for_power

CONFIDENCE = 0.95
TRIALS = 400


def paired_items(rng, n, p_up, p_down):
    """Per-item paired differences of two binary outcomes: +1, −1 or 0 (e.g. RL − IN per item)."""
    u = rng.random(n)
    return (u < p_up).astype(float) - ((u >= p_up) & (u < p_up + p_down)).astype(float)


def stop_rate(plan, p_up, p_down, *, seed=0):
    """Share of simulated runs of ``plan`` that end ``reproduced`` (threshold 0, side above), and
    the mean N used."""
    rng = np.random.default_rng(seed)
    hits, used = 0, []
    for trial in range(TRIALS):
        items = paired_items(rng, plan.looks[-1], p_up, p_down)
        judge = lambda n, level: decide(  # noqa: E731 — the first n items, as a run measures them
            bootstrap_interval(items[:n], level=level, n_resamples=1000, seed=trial), 0.0, "above")
        verdict, n = plan.run(judge)
        hits += verdict == "reproduced"
        used.append(n)
    return hits / TRIALS, float(np.mean(used))


def mc_bound(rate):
    return rate + 3 * math.sqrt(rate * (1 - rate) / TRIALS)


def test_under_a_null_effect_wrong_reproduced_stays_within_the_stated_confidence():
    plan = SequentialPlan.evenly(120, 4, CONFIDENCE)
    assert plan.looks == (30, 60, 90, 120) and plan.level_per_look == pytest.approx(0.9875)
    rate, _ = stop_rate(plan, 0.2, 0.2)
    assert rate <= mc_bound(1 - CONFIDENCE), rate
    # the same four looks without the split spend the level four times over: more wrong verdicts
    naive = SequentialPlan(plan.looks, 1 - 4 * (1 - CONFIDENCE))  # each look at 0.95
    assert naive.level_per_look == pytest.approx(CONFIDENCE)
    naive_rate, _ = stop_rate(naive, 0.2, 0.2)
    assert naive_rate > rate, (naive_rate, rate)


def test_a_planted_effect_of_the_targeted_size_is_found_with_the_stated_power():
    p_up, p_down = 0.3, 0.1                      # effect +0.2
    effect, sd = p_up - p_down, math.sqrt(p_up + p_down - (p_up - p_down) ** 2)
    n_max = n_max_for_power(effect, sd, power=0.8, confidence=CONFIDENCE, n_looks=4)
    plan = SequentialPlan.evenly(n_max, 4, CONFIDENCE)
    assert plan.power(effect, sd) >= 0.8
    rate, mean_n = stop_rate(plan, p_up, p_down, seed=1)
    assert rate >= plan.power(effect, sd) - 3 * math.sqrt(0.8 * 0.2 / TRIALS), (rate, n_max)
    assert mean_n < n_max  # stopping early is what the rounds are for


def test_plans_refuse_nonsense():
    with pytest.raises(ValueError):
        SequentialPlan((50, 20), 0.95)
    with pytest.raises(ValueError):
        SequentialPlan.evenly(3, 4, 0.95)
    with pytest.raises(ValueError):
        n_max_for_power(0.0, 0.5, power=0.8, confidence=0.95, n_looks=4)
