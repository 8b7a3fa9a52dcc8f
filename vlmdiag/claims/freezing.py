"""Whether RL needs its Late layers: RL runs with a region frozen (paper §4, Table 3)."""

from __future__ import annotations

from pydantic import Field

from vlmdiag.claims.rules import (GAIN_METRICS, combine, comparison_condition, comparison_text, comparisons_dict,
                                  decide_text, n_to_resolve_gain, reason_ending, rl_gains, share_condition,
                                  share_part, share_text)
from vlmdiag.claims.registry import Outcome, ProbeThresholds, claim
from vlmdiag.measure.tables import AbilityTable
from vlmdiag.regions import Regions
from vlmdiag.stats import decide, n_to_decide

NECESSARY = ("Late", "Mid-Late")  # freezing either is the paper's finding


class LateNecessaryThresholds(ProbeThresholds):
    min_loss: float = Field(
        ge=0, description="RL − RL-frozen (fraction of items) whose interval must lie above this, for "
                          "each of Mv2r / Mrea on which RL gains over IN")
    # A default keeps thresholds files written before the kept share existed loading.
    max_kept_share: float = Field(
        0.5, ge=0, lt=1, description="share of RL's gain over IN that the frozen run keeps, (RL-frozen − IN) / "
                                     "(RL − IN), whose interval must lie below this, for each of Mv2r / Mrea "
                                     "on which RL gains over IN")


@claim("freezing.late_necessary",
       statement="Freezing Late (or Mid–Late) layers during RL removes the RL gain",
       source="§4, Table 3", measurement="freezing", needs=("rl_frozen", "probes", "inference"),
       thresholds=LateNecessaryThresholds, regions_in_measurement=True)
def late_necessary(table: AbilityTable, regions: Regions, t: LateNecessaryThresholds) -> Outcome:
    """IN, RL and every ``--rl-frozen REGION=CKPT`` run scored on Mvis/Mv2r/Mrea (same items).

    The gains are the metrics among Mv2r, Mrea whose RL − IN interval (paired bootstrap over
    items) lies entirely above 0; when there is none the claim is inconclusive (no gain to remove:
    "freezing removes it" would hold vacuously). For the Late- and Mid-Late-frozen runs given and
    every gain, freezing must remove most of it: the share the frozen run keeps,
    (RL-frozen − IN) / (RL − IN) (paired bootstrap over items, :func:`vlmdiag.stats.kept_share`),
    below ``max_kept_share``, and the loss RL − RL-frozen above ``min_loss``. Reproduced when
    every such interval lies entirely on its side; not_reproduced when one lies entirely on the
    other; inconclusive otherwise, with ``n_to_decide``. The statistic is the largest kept share.
    Skipped when no Late or Mid-Late frozen run is given. The frozen regions were fixed at
    training time, so the verdict is not re-checked at shifted cuts.
    """
    level, n = t.confidence, t.bootstrap_resamples
    runs = [label for label in table.scores if label.removeprefix("RL-frozen-") in NECESSARY]
    frozen = [label for label in table.scores if label.startswith("RL-frozen-")]
    comparisons = {f"{m} {label} − {ref}": table.compare(ref, label, m, level=level, n_resamples=n)
                   for label in ["RL", *frozen] for ref in ("IN", "RL") if label != ref
                   for m in ("Mvis", *GAIN_METRICS)}
    metrics = {"scores": table.table(), "transitions": table.transitions(), "models": list(table.scores),
               "truncated": table.truncated(),
               "comparisons": comparisons_dict(comparisons)}
    if not runs:
        given = ", ".join(f.removeprefix("RL-frozen-") for f in frozen) or "none that can run"
        return Outcome("skipped", f"needs --rl-frozen Late=CKPT or Mid-Late=CKPT (given: {given}); "
                       + "; ".join(table.notes), metrics=metrics)
    gains, rl_text = rl_gains(comparisons)
    metrics["rl_gains"] = gains
    conditions = tuple(comparison_condition(c, 0.0) for m in GAIN_METRICS if (c := comparisons.get(f"{m} RL − IN")))
    if not gains:
        metrics["n_to_decide"] = n_to_resolve_gain(comparisons)
        return Outcome("inconclusive", f"RL has no resolved Mv2r/Mrea gain over IN that freezing could remove "
                       f"({rl_text}); " + decide_text(metrics["n_to_decide"], "resolve RL's gain")
                       + "".join("; " + note for note in table.truncation_notes()), metrics=metrics,
                       conditions=conditions)
    # RL − frozen, as a comparison frozen → RL, so a loss is a positive delta.
    losses = {(label, m): table.compare(label, "RL", m, level=level, n_resamples=n, threshold=t.min_loss)
              for label in runs for m in gains}
    shares = {(label, m): table.kept_share("RL", label, m, level=level, n_resamples=n) for label in runs for m in gains}
    parts = []  # (verdict, n_to_decide, observed effect on the claim's side)
    for key, loss in losses.items():
        parts.append(share_part(shares[key], t.max_kept_share, "below"))
        parts.append((decide(loss.interval, t.min_loss, "above"),
                      n_to_decide(loss.n, loss.delta, loss.interval, t.min_loss), loss.delta > t.min_loss))
        conditions += (share_condition(shares[key], f"{key[1]} share of RL's gain kept by {key[0]}", t.max_kept_share,
                                       "below"),
                       comparison_condition(loss, t.min_loss))
    verdict = combine(*(v for v, _, _ in parts))
    weakest = max(shares.values(), key=lambda s: s.interval.high)
    metrics["losses"] = comparisons_dict({f"{c.metric} RL − {c.label_a}": c for c in losses.values()})
    metrics["kept_share"] = {f"{m} {label}": s.as_dict() for (label, m), s in shares.items()}
    reason = (f"RL gains: {rl_text}; kept when frozen: "
              + "; ".join(f"{label}: {share_text(shares[label, m], m)}, loss {comparison_text(losses[label, m])}"
                          for label, m in losses)
              + f" (thresholds: kept share below {t.max_kept_share:g}, loss above {t.min_loss:g})")
    reason += reason_ending(verdict, parts, metrics, (*table.notes, *table.truncation_notes()))
    return Outcome(verdict, reason, weakest.estimate, weakest.interval, t.max_kept_share, metrics,
                   conditions=conditions)
