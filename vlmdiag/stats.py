"""Paired statistics behind every verdict: bootstrap intervals, exact McNemar tests, Wilson
intervals, and the N that would make an inconclusive result conclusive.

Pure numpy/scipy; every function is seeded so the same inputs give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
    if statistic is np.mean and samples.ndim == 1:
        # the common case, vectorised: the same pairwise sums row by row, so the same numbers
        values = samples[index].astype(float).mean(axis=1)
    else:
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
    1/sqrt(N) around the same estimate. None when the estimate sits on the threshold; more than
    ``n`` while the interval still reaches the threshold (an asymmetric interval can touch it
    although its half-width is below the gap)."""
    gap = abs(estimate - threshold)
    if gap == 0 or not math.isfinite(gap):
        return None
    half_width = (interval.high - interval.low) / 2
    if not math.isfinite(half_width):
        return None
    undecided = interval.low <= threshold <= interval.high
    return max(n + 1 if undecided else n, math.ceil(n * (half_width / gap) ** 2))


def standard_error(interval: Interval) -> float:
    """The standard error a two-sided interval implies: its half-width over the normal quantile
    of its level (for a bootstrap interval, the normal-theory reading of its width)."""
    return (interval.high - interval.low) / 2 / float(_special.ndtri(0.5 + interval.level / 2))


def n_to_decide(n: int, estimate: float, interval: Interval, threshold: float) -> int | None:
    """The N that would decide a comparison at the observed effect: the smallest N at which an
    interval of the same level around ``estimate``, with standard error SE·sqrt(n/N)
    (SE from :func:`standard_error`), no longer contains ``threshold``:
    N = n·(z·SE / |estimate − threshold|)². ``n`` when it is already decided; None when the
    estimate sits on the threshold (no N decides it) or is undefined.

    This is the N at which a rerun at the observed effect has about even odds of deciding (the
    effect is an estimate, not the truth); a sequential design (:class:`SequentialPlan`) is the
    way to get there without spending the confidence level on the extra look.
    """
    return n_needed(n, estimate, interval, threshold)


def n_to_decide_all(parts: Sequence[tuple[int | None, bool]]) -> int | None:
    """The N that decides a rule made of several parts combined as in ``combine`` (every part
    must hold for ``reproduced``; one failing part makes it ``not_reproduced``).

    ``parts``: per part, its :func:`n_to_decide` and whether its observed effect lies on the
    claim's side of its threshold. At the observed effects the rule is decided by the first
    failing part to resolve, or by the last of all parts when every one heads to ``reproduced``.
    None when no N decides it.
    """
    failing = [n for n, holds in parts if not holds and n is not None]
    candidates = failing[:]
    if parts and all(holds for _, holds in parts) and all(n is not None for n, _ in parts):
        candidates.append(max(n for n, _ in parts))
    return min(candidates) if candidates else None


@dataclass(frozen=True)
class Share:
    """A kept fraction ``(Σ partial − Σ reference) / (Σ full − Σ reference)`` over paired items,
    e.g. the share of RL's gain over IN that a splice keeps (1 = all of it, 0 = none).

    ``estimate`` is None when the full model gains nothing (the share is undefined); ``interval``
    is a paired percentile bootstrap over items, in which a resample where the full model gains
    nothing counts as −∞ for the lower bound and +∞ for the upper bound (an undefined share can
    support neither side). ``n``: items.
    """

    estimate: float | None
    interval: Interval
    n: int

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "interval": self.interval.as_dict(), "n": self.n}


def kept_share(reference: np.ndarray, full: np.ndarray, partial: np.ndarray, *, level: float = 0.95,
               n_resamples: int = 2000, seed: int = 0) -> Share:
    """Paired bootstrap interval of the share of ``full``'s gain over ``reference`` that
    ``partial`` keeps: ``mean(partial − reference) / mean(full − reference)``, resampling items.

    Args:
        reference, full, partial: per-item outcomes ``[n]`` on the same items in the same order
            (e.g. 0/1 indicators of IN, RL and the splice IN:RL:RL for one ability).
        level, n_resamples, seed: as in :func:`bootstrap_interval`.

    Raises:
        ValueError: empty or misaligned inputs, or ``level`` outside (0, 1).
    """
    ref, full, partial = (np.asarray(x, dtype=float) for x in (reference, full, partial))
    if not (ref.shape == full.shape == partial.shape) or ref.ndim != 1 or ref.size == 0:
        raise ValueError(f"kept_share needs three aligned non-empty [n] arrays, got {ref.shape}, "
                         f"{full.shape}, {partial.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must be in (0, 1)")
    gain, kept = full - ref, partial - ref
    index = np.random.default_rng(seed).integers(0, ref.size, size=(n_resamples, ref.size))
    g, k = gain[index].sum(axis=1), kept[index].sum(axis=1)
    defined = g > 0
    ratio = np.divide(k, g, out=np.zeros_like(k), where=defined)
    alpha = (1 - level) / 2
    # inverted_cdf picks resampled values (no interpolation with the infinite ones)
    low = np.quantile(np.where(defined, ratio, -np.inf), alpha, method="inverted_cdf")
    high = np.quantile(np.where(defined, ratio, np.inf), 1 - alpha, method="inverted_cdf")
    estimate = float(kept.sum() / gain.sum()) if gain.sum() > 0 else None
    return Share(estimate, Interval(float(low), float(high), level), int(ref.size))


# --------------------------------------------------------------------------- sequential design


@dataclass(frozen=True)
class SequentialPlan:
    """Measure in rounds, stop when the verdict is decided: looks after ``looks[0] < looks[1] <
    ... < looks[-1]`` items (cumulative; the last is the maximum N), each judged with a two-sided
    interval at :attr:`level_per_look`.

    Error spending (Bonferroni): each of the K looks spends (1 − ``confidence``)/K, so the chance
    that *any* look's interval misses the truth is at most 1 − ``confidence`` (union bound), and
    a wrong ``reproduced`` or ``not_reproduced`` at whichever look the design stops is as rare as
    the stated confidence promises, however the looks are correlated. Pocock's boundaries would
    be a little narrower, but hold only for the normal model they are computed under.
    """

    looks: tuple[int, ...]
    confidence: float

    def __post_init__(self):
        if not self.looks or any(n < 1 for n in self.looks) or list(self.looks) != sorted(set(self.looks)):
            raise ValueError(f"looks {self.looks} must be increasing item counts >= 1")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence={self.confidence} must be in (0, 1)")

    @classmethod
    def evenly(cls, n_max: int, n_looks: int, confidence: float) -> SequentialPlan:
        """``n_looks`` looks at n_max/K, 2·n_max/K, ..., n_max items."""
        if n_looks < 1 or n_max < n_looks:
            raise ValueError(f"need 1 <= n_looks={n_looks} <= n_max={n_max}")
        return cls(tuple(math.ceil(n_max * (k + 1) / n_looks) for k in range(n_looks)), confidence)

    @property
    def level_per_look(self) -> float:
        """The confidence level of each look's interval: 1 − (1 − confidence)/K."""
        return 1 - (1 - self.confidence) / len(self.looks)

    def run(self, judge: Callable[[int, float], Verdict]) -> tuple[Verdict, int]:
        """Run the design: ``judge(n, level)`` measures (or reads) the first ``n`` items and returns
        the verdict of an interval at ``level``. Returns the first decided verdict and the N it
        used, or ``inconclusive`` at the maximum N."""
        for n in self.looks:
            verdict = judge(n, self.level_per_look)
            if verdict != "inconclusive":
                return verdict, n
        return "inconclusive", self.looks[-1]

    def power(self, effect: float, sd: float) -> float:
        """A lower bound on the chance of ``reproduced`` when the true effect beyond the threshold
        is ``effect`` > 0 and one item's standard deviation is ``sd``: the normal-approximation
        power of the last look alone, Φ(effect·√N_max/sd − z), z the two-sided quantile of
        :attr:`level_per_look` (earlier looks can only add to it)."""
        z = float(_special.ndtri(0.5 + self.level_per_look / 2))
        return float(_special.ndtr(effect * math.sqrt(self.looks[-1]) / sd - z))


def n_max_for_power(effect: float, sd: float, *, power: float, confidence: float, n_looks: int) -> int:
    """The maximum N of an evenly spaced :class:`SequentialPlan` with ``n_looks`` looks whose
    :meth:`~SequentialPlan.power` at ``effect`` (per-item standard deviation ``sd``) is at least
    ``power``: N = ((z_look + z_power)·sd/effect)².

    Raises:
        ValueError: ``effect`` or ``sd`` not positive, ``power`` outside (0, 1).
    """
    if effect <= 0 or sd <= 0 or not 0 < power < 1:
        raise ValueError(f"need effect > 0, sd > 0 and power in (0, 1); got {effect}, {sd}, {power}")
    z_look = float(_special.ndtri(1 - (1 - confidence) / n_looks / 2))
    return max(n_looks, math.ceil(((z_look + float(_special.ndtri(power))) * sd / effect) ** 2))
