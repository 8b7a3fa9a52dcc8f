"""Whether RL needs its Late layers: RL runs with a region frozen (paper §4, Table 3)."""

from __future__ import annotations

from pydantic import Field

from vlmdiag.claims.inference import (GAIN_METRICS, AbilityTable, combine, comparison_condition, comparison_text,
                                      comparisons_dict, rl_gains)
from vlmdiag.claims.registry import Outcome, ProbeThresholds, claim
from vlmdiag.regions import Regions
from vlmdiag.stats import decide

NECESSARY = ("Late", "Mid-Late")  # freezing either is the paper's finding


class LateNecessaryThresholds(ProbeThresholds):
    min_loss: float = Field(
        ge=0, description="RL − RL-frozen (fraction of items) whose interval must lie above this, for "
                          "each of Mv2r / Mrea on which RL gains over IN")


@claim("freezing.late_necessary",
       statement="Freezing Late (or Mid–Late) layers during RL removes the RL gain",
       source="§4, Table 3", measurement="freezing", needs=("rl_frozen", "probes", "inference"),
       thresholds=LateNecessaryThresholds, regions_in_measurement=True)
def late_necessary(table: AbilityTable, regions: Regions, t: LateNecessaryThresholds) -> Outcome:
    """IN, RL and every ``--rl-frozen REGION=CKPT`` run scored on Mvis/Mv2r/Mrea (same items).

    The gains are the metrics among Mv2r, Mrea whose RL − IN interval (paired bootstrap over
    items) lies entirely above 0. For the Late- and Mid-Late-frozen runs given, reproduced when
    every RL − frozen interval on every gain lies entirely above ``min_loss`` (freezing lost the
    gain); not_reproduced when one lies entirely at or below it; inconclusive otherwise, and when
    RL has no resolved gain. Skipped when no Late or Mid-Late frozen run is given. The frozen
    regions were fixed at training time, so the verdict is not re-checked at shifted cuts.
    """
    level, n = t.confidence, t.bootstrap_resamples
    runs = [label for label in table.scores if label.removeprefix("RL-frozen-") in NECESSARY]
    frozen = [label for label in table.scores if label.startswith("RL-frozen-")]
    comparisons = {f"{m} {label} − {ref}": table.compare(ref, label, m, level=level, n_resamples=n)
                   for label in ["RL", *frozen] for ref in ("IN", "RL") if label != ref
                   for m in ("Mvis", *GAIN_METRICS)}
    metrics = {"scores": table.table(), "transitions": table.transitions(), "models": list(table.scores),
               "comparisons": comparisons_dict(comparisons)}
    if not runs:
        given = ", ".join(f.removeprefix("RL-frozen-") for f in frozen) or "none that can run"
        return Outcome("skipped", f"needs --rl-frozen Late=CKPT or Mid-Late=CKPT (given: {given}); "
                       + "; ".join(table.notes), metrics=metrics)
    gains, rl_text = rl_gains(comparisons)
    metrics["rl_gains"] = gains
    conditions = tuple(comparison_condition(c, 0.0) for m in GAIN_METRICS if (c := comparisons.get(f"{m} RL − IN")))
    if not gains:
        return Outcome("inconclusive", f"RL has no resolved Mv2r/Mrea gain over IN that freezing could remove "
                       f"({rl_text})", metrics=metrics, conditions=conditions)
    # RL − frozen, as a comparison frozen → RL, so a loss is a positive delta.
    losses = [table.compare(label, "RL", m, level=level, n_resamples=n, threshold=t.min_loss)
              for label in runs for m in gains]
    verdict = combine(*(decide(c.interval, t.min_loss, "above") for c in losses))
    weakest = min(losses, key=lambda c: c.interval.low)
    metrics["losses"] = comparisons_dict({f"{c.metric} RL − {c.label_a}": c for c in losses})
    reason = (f"RL gains: {rl_text}; loss when frozen: " + "; ".join(comparison_text(c) for c in losses)
              + f" (threshold {t.min_loss:g})" + ("; " + "; ".join(table.notes) if table.notes else ""))
    conditions += tuple(comparison_condition(c, t.min_loss) for c in losses)
    return Outcome(verdict, reason, weakest.delta, weakest.interval, t.min_loss, metrics, conditions=conditions)
