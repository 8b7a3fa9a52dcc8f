"""Claims as data: each is the paper's sentence, its source, what it needs, which measurement it
reads, and a verdict rule (``judge``) that turns the measurement into an :class:`Outcome`.

A claim's ``judge`` is pure and cheap, so the runner re-runs it with every region boundary moved
by ±1 and ±2 layers (SPEC §3) without measuring again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vlmdiag.stats import Interval

VERDICTS = ("reproduced", "not_reproduced", "inconclusive", "skipped", "error")


class ClaimThresholds(BaseModel):
    """Fields every claim's entry in ``thresholds.yaml`` has; claims subclass it with their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    gate: bool = Field(description="a not_reproduced verdict fails the test (unless --report-only)")
    confidence: float = Field(gt=0, lt=1, description="confidence level of the verdict's interval")


@dataclass(frozen=True)
class Outcome:
    """What a verdict rule decided.

    ``statistic`` is the effect the verdict is about, ``interval`` its confidence interval
    (degenerate for exact, unsampled statistics), ``threshold`` what it was compared with.
    ``metrics``: scalars and per-layer arrays (lists) for the report and plots.
    ``series``: name of the per-layer array in ``metrics`` that the terminal sparkline shows.
    """

    verdict: str
    reason: str
    statistic: float | None = None
    interval: Interval | None = None
    threshold: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    series: str | None = None


@dataclass(frozen=True)
class Claim:
    """One of the paper's findings, as a checkable claim."""

    id: str
    statement: str
    source: str
    needs: frozenset[str]  # roles beyond base and rl: "origin", "probes", "rl_frozen"
    measurement: str  # the Evidence measurement the judge reads
    thresholds: type[ClaimThresholds]
    judge: Callable[..., Outcome]  # judge(measurement, regions, thresholds) -> Outcome


CLAIMS: dict[str, Claim] = {}


def claim(id: str, *, statement: str, source: str, measurement: str,
          thresholds: type[ClaimThresholds], needs: tuple[str, ...] = ()):
    """Register the decorated verdict rule as a claim (see :class:`Claim`)."""

    def register(judge: Callable[..., Outcome]) -> Callable[..., Outcome]:
        if id in CLAIMS:
            raise ValueError(f"claim {id!r} is registered twice")
        CLAIMS[id] = Claim(id, statement, source, frozenset(needs), measurement, thresholds, judge)
        return judge

    return register


def all_claims() -> dict[str, Claim]:
    """Every claim, after importing the modules that declare them."""
    from vlmdiag.claims import updates  # noqa: F401  (registers on import)

    return CLAIMS
