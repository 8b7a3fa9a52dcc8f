"""Verdict statistics against hand-computed values."""

import numpy as np
import pytest

from vlmdiag.stats import Interval, bootstrap_interval, decide, mcnemar_exact, n_needed, wilson_interval


def test_decide_needs_the_whole_interval_on_one_side():
    assert decide(Interval(0.2, 0.5, 0.95), 0.1, "above") == "reproduced"
    assert decide(Interval(0.0, 0.5, 0.95), 0.1, "above") == "inconclusive"
    assert decide(Interval(-0.3, 0.05, 0.95), 0.1, "above") == "not_reproduced"
    assert decide(Interval(-0.3, -0.1, 0.95), 0.0, "below") == "reproduced"
    assert decide(Interval(0.1, 0.3, 0.95), 0.0, "below") == "not_reproduced"


def test_bootstrap_is_seeded_and_covers_the_mean():
    x = np.random.default_rng(1).normal(0.3, 1.0, size=400)
    a, b = bootstrap_interval(x, seed=3), bootstrap_interval(x, seed=3)
    assert a == b
    assert a.low < x.mean() < a.high
    assert a.high - a.low == pytest.approx(2 * 1.96 * x.std() / 20, rel=0.15)


def test_wilson_and_mcnemar_match_textbook_values():
    w = wilson_interval(50, 100)
    assert (w.low, w.high) == pytest.approx((0.4038, 0.5962), abs=1e-3)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 * 0.5 ** 10)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_n_needed_grows_as_the_effect_shrinks():
    i = Interval(-0.02, 0.10, 0.95)
    assert n_needed(100, 0.04, i, 0.0) == 225
    assert n_needed(100, 0.04, i, 0.04) is None
