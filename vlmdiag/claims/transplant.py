"""Which regions carry RL's gain: Frankenstein transplants (paper §3.3, Table 2)."""

from __future__ import annotations

from pydantic import Field

from vlmdiag.claims.inference import (GAIN_METRICS, AbilityTable, combine, comparison_condition, comparison_text,
                                      comparisons_dict, rl_gains)
from vlmdiag.claims.registry import Outcome, ProbeThresholds, claim
from vlmdiag.regions import Regions
from vlmdiag.stats import decide

ABILITY_ROWS = ("Mvis", *GAIN_METRICS)
SPLICE = "IN:RL:RL"


class MidLateCarriesGainThresholds(ProbeThresholds):
    min_kept_gain: float = Field(
        description="IN:RL:RL − IN (fraction of items) whose interval must lie above this, for each "
                    "of Mv2r / Mrea on which RL gains over IN")


def splice_table(table: AbilityTable, versus_in: dict) -> dict:
    """The paper's Table 2 as data: ``rows`` (Mvis, Mv2r, Mrea), ``columns`` (the models in
    measurement order: IN, the six splices, RL) and ``cells[row][column]`` = ``{"score",
    "delta", "interval", "p_value"}`` (fractions; ``delta`` = column − IN with its paired
    interval; None where IN itself or where a metric was not scored)."""
    scores = table.table()
    cells = {}
    for metric in ABILITY_ROWS:
        cells[metric] = {}
        for label in table.scores:
            c = versus_in.get(f"{metric} {label} − IN")
            cells[metric][label] = {"score": scores[label].get(metric), "delta": c.delta if c else None,
                                    "interval": c.interval.as_dict() if c else None,
                                    "p_value": c.p_value if c else None}
    return {"rows": list(ABILITY_ROWS), "columns": list(table.scores), "reference": "IN", "cells": cells}


@claim("transplant.mid_late_carries_gain",
       statement="Transplanting RL's Mid+Late layers into IN (IN:RL:RL) keeps the Mv2r and Mrea gains; "
                 "other combinations are not consistent",
       source="§3.3, Table 2", measurement="transplant", needs=("probes", "inference"),
       thresholds=MidLateCarriesGainThresholds, regions_in_measurement=True)
def mid_late_carries_gain(table: AbilityTable, regions: Regions, t: MidLateCarriesGainThresholds) -> Outcome:
    """All eight models of Table 2 (IN, the six Early:Mid:Late splices, RL; one IN model loaded,
    RL's regions spliced in memory at the run's cuts) scored on Mvis/Mv2r/Mrea, each compared
    with IN (paired bootstrap interval over items, exact McNemar).

    The gains to carry are the metrics among Mv2r, Mrea whose RL − IN interval lies entirely
    above 0. Reproduced when, for each of them, the IN:RL:RL − IN interval lies entirely above
    ``min_kept_gain``; not_reproduced when one lies entirely at or below it; inconclusive
    otherwise, and when RL has no resolved gain to carry. Which other splices also keep every
    gain is reported (``splices_keeping_the_gain``), not judged. The cuts are those of the
    measurement, so the verdict is not re-checked at shifted cuts.
    """
    level, n = t.confidence, t.bootstrap_resamples
    versus_in = {f"{m} {label} − IN": table.compare("IN", label, m, level=level, n_resamples=n)
                 for label in table.scores if label != "IN" for m in ("Mvis", *GAIN_METRICS)}
    metrics = {"scores": table.table(), "transitions": table.transitions(),
               "comparisons": comparisons_dict(versus_in), "models": list(table.scores),
               "splice_table": splice_table(table, versus_in)}
    gains, rl_text = rl_gains(versus_in)
    metrics["rl_gains"] = gains
    kept = lambda label, m: versus_in.get(f"{m} {label} − IN")  # noqa: E731
    metrics["splices_keeping_the_gain"] = [
        label for label in table.scores if label not in ("IN", "RL") and gains
        and all((c := kept(label, m)) is not None and c.interval.low > t.min_kept_gain for m in gains)]
    conditions = tuple(comparison_condition(c, 0.0) for m in GAIN_METRICS if (c := versus_in.get(f"{m} RL − IN")))
    if not gains:
        return Outcome("inconclusive", f"RL has no resolved Mv2r/Mrea gain over IN to carry ({rl_text})",
                       metrics=metrics, conditions=conditions)
    splice = [kept(SPLICE, m) for m in gains]
    if any(c is None for c in splice):
        raise ValueError(f"transplant: {SPLICE} was not scored on {', '.join(gains)}")
    verdict = combine(*(decide(c.interval, t.min_kept_gain, "above") for c in splice))
    weakest = min(splice, key=lambda c: c.interval.low)
    reason = (f"RL gains: {rl_text}; {SPLICE} keeps: " + "; ".join(comparison_text(c) for c in splice)
              + f" (threshold {t.min_kept_gain:g}); other splices keeping every gain: "
              + (", ".join(s for s in metrics["splices_keeping_the_gain"] if s != SPLICE) or "none")
              + "; " + "; ".join(table.notes))
    conditions += tuple(comparison_condition(c, t.min_kept_gain) for c in splice)
    return Outcome(verdict, reason, weakest.delta, weakest.interval, t.min_kept_gain, metrics, conditions=conditions)
