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


def test_n_needed_is_above_n_while_the_interval_touches_the_threshold():
    """A skewed interval [-0.22, 0.00] around -0.115 reaches 0 though its half-width (0.11) is
    below the gap: undecided at N = 96, so the N that would decide it is more than 96 (the organism
    printed 'about N = 96 items would decide it' at N = 96)."""
    assert n_needed(96, -0.115, Interval(-0.22, 0.0, 0.95), 0.0) == 97
    assert n_needed(96, -0.115, Interval(-0.22, -0.01, 0.95), 0.0) == 96  # decided: N itself


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


def test_vectorised_bootstrap_of_the_mean_gives_the_same_interval_as_the_loop():
    from vlmdiag.stats import bootstrap_interval as fast

    x = np.random.default_rng(2).normal(size=97)
    loop = fast(x, lambda v: float(np.mean(v)), seed=5)  # not np.mean itself: the row-by-row path
    assert fast(x, seed=5) == loop


def test_kept_share_is_the_paired_ratio_of_gains_with_a_conservative_interval():
    from vlmdiag.stats import kept_share

    n = 100
    ref = np.zeros(n)
    full = (np.arange(n) < 40).astype(float)          # gains 0.40
    half = (np.arange(n) < 20).astype(float)          # keeps half of it
    share = kept_share(ref, full, half, n_resamples=2000)
    assert share.estimate == pytest.approx(0.5) and share.n == n
    assert share.interval.low < 0.5 < share.interval.high and share.interval.high - share.interval.low < 0.4
    assert kept_share(ref, full, full).interval.low == pytest.approx(1.0)
    # no gain: undefined share, an interval that supports no side
    none = kept_share(ref, ref, half)
    assert none.estimate is None and none.interval.low == -np.inf and none.interval.high == np.inf
    with pytest.raises(ValueError):
        kept_share(ref, full[:10], half)


def test_n_to_decide_of_several_parts_is_decided_by_the_first_failing_or_the_last_holding_part():
    from vlmdiag.stats import n_to_decide, n_to_decide_all, standard_error

    i = Interval(-0.02, 0.10, 0.95)
    assert n_to_decide(100, 0.04, i, 0.0) == 225 and standard_error(i) == pytest.approx(0.06 / 1.959964)
    assert n_to_decide_all([(225, True), (400, True)]) == 400      # every part must hold
    assert n_to_decide_all([(225, True), (900, False)]) == 900     # one failing part decides alone
    assert n_to_decide_all([(225, True), (None, True)]) is None    # a part on its threshold never decides
    assert n_to_decide_all([(300, False), (None, True)]) == 300
