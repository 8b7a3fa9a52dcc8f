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


def test_mcnemar_is_scipys_exact_binomial_test_and_wilson_uses_the_normal_quantile():
    from scipy import stats

    for discordant in range(1, 61):
        for n_tf in range(discordant + 1):
            expected = stats.binomtest(n_tf, discordant, 0.5).pvalue
            assert mcnemar_exact(n_tf, discordant - n_tf) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    for level in (0.8, 0.9, 0.95, 0.99):
        z = stats.norm.ppf(0.5 + level / 2)
        p, n = 0.3, 40
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        assert wilson_interval(12, n, level=level).low == pytest.approx(
            centre - z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n), rel=1e-12)
