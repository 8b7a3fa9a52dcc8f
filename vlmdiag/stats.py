"""Paired statistics behind every verdict: bootstrap intervals, exact McNemar tests, Wilson
intervals, and the N that would make an inconclusive result conclusive.

Pure numpy/scipy; every function is seeded so the same inputs give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special as _special  # not scipy.stats: 0.6 s of imports every run pays

Side = Literal["above", "below"]
Verdict = Literal["reproduced", "not_reproduced", "inconclusive"]


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval [low, high] at ``level`` (e.g. 0.95)."""

    low: float
    high: float
    level: float

    def as_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "level": self.level}


def bootstrap_interval(
    samples: np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over the rows of ``samples``.

    Rows are the resampling unit (items, or layers for a cluster bootstrap), so paired measurements
    belong in one row: pass ``[n_items]`` values of a paired difference, or ``[n_items, k]``.

    Args:
        samples: array ``[n, ...]``; ``n >= 1``.
        statistic: maps an array shaped like ``samples`` to a float.
        level: confidence level in (0, 1).
        n_resamples: bootstrap resamples.
        seed: RNG seed (the interval is a deterministic function of the inputs).

    Raises:
        ValueError: ``samples`` is empty or ``level`` is outside (0, 1).
    """
    samples = np.asarray(samples)
    if samples.shape[0] == 0:
        raise ValueError("bootstrap_interval needs at least one sample")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must be in (0, 1)")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, samples.shape[0], size=(n_resamples, samples.shape[0]))
    values = np.array([statistic(samples[row]) for row in index], dtype=float)
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return Interval(float(low), float(high), level)


def wilson_interval(successes: int, n: int, *, level: float = 0.95) -> Interval:
    """Wilson score interval of a proportion ``successes / n``.

    Raises:
        ValueError: ``n < 1`` or ``successes`` outside [0, n].
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes={successes} <= n={n}, n >= 1")
    z = _special.ndtri(0.5 + level / 2)  # the normal quantile
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends, not 1e-17 off
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high, level)


def mcnemar_exact(n_tf: int, n_ft: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts of paired binary outcomes.

    ``n_tf``: items right under condition A and wrong under B; ``n_ft``: the reverse.
    Returns 1.0 when there are no discordant pairs.
    """
    discordant = n_tf + n_ft
    if discordant == 0:
        return 1.0
    # Binomial(discordant, 1/2) is symmetric: the two-sided exact p is twice the smaller tail.
    return min(1.0, float(2 * _special.bdtr(min(n_tf, n_ft), discordant, 0.5)))


def decide(interval: Interval, threshold: float, side: Side) -> Verdict:
    """The verdict rule shared by every claim: the whole interval must lie on the claim's side.

    ``side="above"``: the claim holds when the statistic exceeds ``threshold``;
    ``"below"``: when it is under it. An interval that straddles the threshold is inconclusive.
    """
    if side == "above":
        if interval.low > threshold:
            return "reproduced"
        if interval.high <= threshold:
            return "not_reproduced"
    else:
        if interval.high < threshold:
            return "reproduced"
        if interval.low >= threshold:
            return "not_reproduced"
    return "inconclusive"


def n_needed(n: int, estimate: float, interval: Interval, threshold: float) -> int | None:
    """Items needed for the interval to clear ``threshold``, assuming its half-width shrinks as
    1/sqrt(N) around the same estimate. None when the estimate sits on the threshold."""
    gap = abs(estimate - threshold)
    if gap == 0:
        return None
    half_width = (interval.high - interval.low) / 2
    return max(n, math.ceil(n * (half_width / gap) ** 2))
