"""Claims as data: each is the paper's sentence, its source, what it needs, which measurement it
reads, and a verdict rule (``judge``) that turns the measurement into an :class:`Outcome`.

A claim's ``judge`` is pure and cheap, so the runner re-runs it with every region boundary moved
by ±1 and ±2 layers (SPEC §3) without measuring again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from vlmdiag.stats import Interval, Side, decide

VERDICTS = ("reproduced", "not_reproduced", "inconclusive", "skipped", "error")


class ClaimThresholds(BaseModel):
    """Fields every claim's entry in ``thresholds.yaml`` has; claims subclass it with their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    gate: bool = Field(description="a not_reproduced verdict fails the test (unless --report-only)")
    confidence: float = Field(gt=0, lt=1, description="confidence level of the verdict's interval")

    #: The measurement's settings this class supplies: ``{setting name: field name}``. The
    #: measurement's plan declares the settings it takes (a pydantic model,
    #: :class:`vlmdiag.runner.plans.PlanSpec`); a claim whose thresholds supply other settings than
    #: its plan takes is refused when claims are checked against plans, before anything runs.
    MEASUREMENT_SETTINGS: ClassVar[dict[str, str]] = {}

    def probe_settings(self) -> dict | None:
        """Keyword arguments of the claim's measurement (probe count, decoding budget), from
        :attr:`MEASUREMENT_SETTINGS`; None for measurements that take none (the weight pass)."""
        return {name: getattr(self, field) for name, field in self.MEASUREMENT_SETTINGS.items()} or None


class ProbeThresholds(ClaimThresholds):
    """Thresholds of a claim measured by running the models on probe items: the probe count and
    the decoding budget live next to the verdict numbers, since the interval width depends on N."""

    n_items: int = Field(ge=1, description="probe items per probe set (N, the bootstrap unit)")
    max_new_tokens: int = Field(ge=1, description="greedy decoding budget per answer")
    bootstrap_resamples: int = Field(ge=100)
    probe_seed: int = Field(default=0, description="seed of the probe suite's items")
    MEASUREMENT_SETTINGS: ClassVar[dict[str, str]] = {"n_items": "n_items", "max_new_tokens": "max_new_tokens",
                                                      "seed": "probe_seed"}


_HOLDS = {"reproduced": True, "not_reproduced": False, "inconclusive": None}


@dataclass(frozen=True)
class Condition:
    """One condition a verdict rule read: ``statistic`` ``op`` ``threshold``, where ``op`` is
    ``>``, ``<``, ``>=`` or ``<=``. ``holds``: True (the whole ``interval`` lies on the
    condition's side, or the exact statistic does), False (on the other side), None (the interval
    straddles the threshold). ``interval`` is None for an exact statistic.

    The report shows every condition with its direction, so a verdict says why where the user
    looks (``margin over Early +0.0004 [-0.001, 0.002] > 0 ?``).
    """

    name: str
    statistic: float | None
    interval: Interval | None
    op: str
    threshold: float
    holds: bool | None

    def as_dict(self) -> dict:
        return {"name": self.name, "statistic": self.statistic,
                "interval": self.interval.as_dict() if self.interval else None,
                "op": self.op, "threshold": self.threshold, "holds": self.holds}


def condition(name: str, statistic: float | None, interval: Interval, threshold: float, side: Side) -> Condition:
    """The condition that ``interval`` (around ``statistic``) lies on ``side`` of ``threshold``,
    decided as every verdict is (:func:`vlmdiag.stats.decide`: strictly ``>`` or ``<``)."""
    return Condition(name, None if statistic is None else float(statistic), interval,
                     ">" if side == "above" else "<", float(threshold), _HOLDS[decide(interval, threshold, side)])


def requirement(name: str, value: float, op: str, threshold: float) -> Condition:
    """An exact precondition (``value op threshold``, ``op`` one of ``>= <= > <``), such as "the
    unskipped model answers enough items" without which the rule can only say inconclusive."""
    holds = {">=": value >= threshold, "<=": value <= threshold, ">": value > threshold, "<": value < threshold}[op]
    return Condition(name, float(value), None, op, float(threshold), bool(holds))


@dataclass(frozen=True)
class Outcome:
    """What a verdict rule decided.

    ``statistic`` is the effect the verdict is about, ``interval`` its confidence interval
    (degenerate for exact, unsampled statistics), ``threshold`` what it was compared with.
    ``metrics``: scalars and per-layer arrays (lists) for the report and plots.
    ``series``: name of the per-layer array in ``metrics`` that the terminal sparkline shows.
    ``conditions``: every :class:`Condition` the rule read, in the order it read them.
    """

    verdict: str
    reason: str
    statistic: float | None = None
    interval: Interval | None = None
    threshold: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    series: str | None = None
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Claim:
    """One of the paper's findings, as a checkable claim."""

    id: str
    statement: str
    source: str
    needs: frozenset[str]  # beyond base and rl: "origin", "rl_frozen", "inference" (see Runner.has)
    measurement: str  # the name of the registered plan (vlmdiag.runner.plans) whose value the judge reads
    thresholds: type[ClaimThresholds]
    judge: Callable[..., Outcome]  # judge(measurement, regions, thresholds) -> Outcome
    # The region cuts are part of the measurement (a transplant splices at them; a frozen RL run
    # was trained with them): the runner passes ``regions`` to the measurement and does not
    # re-judge at shifted cuts, which would need a new measurement per cut.
    regions_in_measurement: bool = False


CLAIMS: dict[str, Claim] = {}


def claim(id: str, *, statement: str, source: str, measurement: str,
          thresholds: type[ClaimThresholds], needs: tuple[str, ...] = (),
          regions_in_measurement: bool = False):
    """Register the decorated verdict rule as a claim (see :class:`Claim`)."""

    def register(judge: Callable[..., Outcome]) -> Callable[..., Outcome]:
        known = CLAIMS.get(id)
        # The same rule again (its module imported anew, as an in-process pytest run may do) replaces it.
        if known is not None and _origin(known.judge) != _origin(judge):
            raise ValueError(f"claim {id!r} is registered twice ({_origin(known.judge)[0]} and {_origin(judge)[0]})")
        CLAIMS[id] = Claim(id, statement, source, frozenset(needs), measurement, thresholds, judge,
                           regions_in_measurement)
        return judge

    return register


def _origin(judge: Callable) -> tuple[str, str]:
    return getattr(judge, "__module__", "?"), getattr(judge, "__qualname__", "?")


def all_claims() -> dict[str, Claim]:
    """Every claim, after importing every module of :mod:`vlmdiag.claims` (each registers its
    claims on import, so a new claim module needs no entry anywhere), and those that plugins
    added through the ``pytest_vlmdiag_add_claims`` hook."""
    import importlib
    import pkgutil

    import vlmdiag.claims as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    return CLAIMS
