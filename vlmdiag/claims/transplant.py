"""Which regions carry RL's gain: Frankenstein transplants (paper §3.3, Table 2)."""

from __future__ import annotations

from pydantic import Field

from vlmdiag.claims.rules import (GAIN_METRICS, combine, comparison_condition, comparison_text, comparisons_dict,
                                  decide_text, n_to_resolve_gain, reason_ending, rl_gains, share_condition,
                                  share_part, share_text)
from vlmdiag.claims.registry import Outcome, ProbeThresholds, claim
from vlmdiag.measure.tables import AbilityTable
from vlmdiag.regions import Regions
from vlmdiag.stats import decide, n_to_decide

ABILITY_ROWS = ("Mvis", *GAIN_METRICS)
SPLICE = "IN:RL:RL"


class MidLateCarriesGainThresholds(ProbeThresholds):
    min_kept_gain: float = Field(
        description="IN:RL:RL − IN (fraction of items) whose interval must lie above this, for each "
                    "of Mv2r / Mrea on which RL gains over IN")
    # A default keeps thresholds files written before the kept share existed loading.
    min_kept_share: float = Field(
        0.5, gt=0, le=1, description="share of RL's gain over IN that IN:RL:RL keeps, (IN:RL:RL − IN) / "
                                     "(RL − IN), whose interval must lie above this, for each of Mv2r / Mrea "
                                     "on which RL gains over IN")


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
    above 0; when there is none the claim is inconclusive (nothing to carry: "keeps the gain"
    would hold vacuously). For each gain, IN:RL:RL must keep a stated share of it: the kept
    share (IN:RL:RL − IN) / (RL − IN) (paired bootstrap over items, :func:`vlmdiag.stats.kept_share`)
    above ``min_kept_share`` and the kept gain IN:RL:RL − IN above ``min_kept_gain``.
    Reproduced when every such interval lies entirely above its threshold; not_reproduced when one
    lies entirely at or below it; inconclusive otherwise, with ``n_to_decide``, the N that would
    decide it at the observed effects. The statistic is the weakest kept share. Which other
    splices also keep that share of every gain is reported (``splices_keeping_the_gain``), not
    judged. The cuts are those of the measurement, so the verdict is not re-checked at shifted cuts.
    """
    level, n = t.confidence, t.bootstrap_resamples
    versus_in = {f"{m} {label} − IN": table.compare("IN", label, m, level=level, n_resamples=n)
                 for label in table.scores if label != "IN" for m in ("Mvis", *GAIN_METRICS)}
    metrics = {"scores": table.table(), "transitions": table.transitions(), "truncated": table.truncated(),
               "comparisons": comparisons_dict(versus_in), "models": list(table.scores),
               "splice_table": splice_table(table, versus_in)}
    gains, rl_text = rl_gains(versus_in)
    metrics["rl_gains"] = gains
    conditions = tuple(comparison_condition(c, 0.0) for m in GAIN_METRICS if (c := versus_in.get(f"{m} RL − IN")))
    if not gains:
        metrics["n_to_decide"] = n_to_resolve_gain(versus_in)
        return Outcome("inconclusive", f"RL has no resolved Mv2r/Mrea gain over IN to carry ({rl_text}); "
                       + decide_text(metrics["n_to_decide"], "resolve RL's gain")
                       + "".join("; " + note for note in table.truncation_notes()), metrics=metrics,
                       conditions=conditions)
    if any(SPLICE not in table.scores or versus_in.get(f"{m} {SPLICE} − IN") is None for m in gains):
        raise ValueError(f"transplant: {SPLICE} was not scored on {', '.join(gains)}")
    shares = {label: {m: table.kept_share("RL", label, m, level=level, n_resamples=n) for m in gains}
              for label in table.scores if label not in ("IN", "RL")}
    metrics["kept_share"] = {label: {m: s.as_dict() for m, s in by.items()} for label, by in shares.items()}
    metrics["splices_keeping_the_gain"] = [
        label for label, by in shares.items()
        if all(s.interval.low > t.min_kept_share and versus_in[f"{m} {label} − IN"].interval.low > t.min_kept_gain
               for m, s in by.items())]
    parts = []  # (verdict, n_to_decide, observed effect on the claim's side)
    for m in gains:
        share, kept = shares[SPLICE][m], versus_in[f"{m} {SPLICE} − IN"]
        parts.append(share_part(share, t.min_kept_share, "above"))
        parts.append((decide(kept.interval, t.min_kept_gain, "above"),
                      n_to_decide(kept.n, kept.delta, kept.interval, t.min_kept_gain), kept.delta > t.min_kept_gain))
        conditions += (share_condition(share, f"{m} share of RL's gain kept by {SPLICE}", t.min_kept_share, "above"),
                       comparison_condition(kept, t.min_kept_gain))
    verdict = combine(*(v for v, _, _ in parts))
    weakest_metric = min(gains, key=lambda m: shares[SPLICE][m].interval.low)
    weakest = shares[SPLICE][weakest_metric]
    reason = (f"RL gains: {rl_text}; {SPLICE} keeps: "
              + "; ".join(f"{share_text(shares[SPLICE][m], m)}, {comparison_text(versus_in[f'{m} {SPLICE} − IN'])}"
                          for m in gains)
              + f" (thresholds: share {t.min_kept_share:g}, gain {t.min_kept_gain:g}); other splices keeping "
              "that share of every gain: "
              + (", ".join(s for s in metrics["splices_keeping_the_gain"] if s != SPLICE) or "none"))
    reason += reason_ending(verdict, parts, metrics, (*table.notes, *table.truncation_notes()))
    return Outcome(verdict, reason, weakest.estimate, weakest.interval, t.min_kept_share, metrics,
                   conditions=conditions)
