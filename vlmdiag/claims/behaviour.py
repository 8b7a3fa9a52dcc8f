"""How far RL moved the model's behaviour: forward KL of the next-token distributions (RL's Razor,
Shenfeld et al., arXiv 2509.04259). Beyond the Frankenstein paper; gated off until calibrated."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from vlmdiag.claims.registry import Outcome, ProbeThresholds, claim, condition, requirement
from vlmdiag.regions import Regions
from vlmdiag.stats import bootstrap_interval, decide, n_to_decide


class KLSmallThresholds(ProbeThresholds):
    max_kl_ratio: float = Field(
        gt=0, description="KL(IN‖RL) / KL(Base‖IN) (nats per token, ratio of item means) whose interval "
                          "must lie below this")
    min_kl: float = Field(
        ge=0, description="nats per token each KL's mean must exceed (its interval's lower end) for the "
                          "ratio to mean anything: below it a stage did not move the model")


def _ratio(rows: np.ndarray) -> float:
    # rows [n, 2] (KL(IN‖RL), KL(Base‖IN)) per item, resampled together: items are the unit.
    denominator = rows[..., 1].mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return rows[..., 0].mean(-1) / denominator


@claim("behaviour.rl_kl_small",
       statement="RL moves the next-token distributions less than SFT did: KL(IN‖RL) < KL(Base‖IN)",
       source="RL's Razor (Shenfeld et al., arXiv 2509.04259), §3 and Fig. 2", measurement="kl_drift",
       needs=("origin", "origin_inference", "probes", "inference"), thresholds=KLSmallThresholds)
def rl_kl_small(drift, regions: Regions, t: KLSmallThresholds) -> Outcome:
    """``drift`` holds two :class:`vlmdiag.measure.kl.ForwardKL` on the same items: ``in_rl``
    (KL(IN‖RL) along IN's greedy answers) and ``base_in`` (KL(Base‖IN) along Base's).

    The statistic is the ratio of the item means, KL(IN‖RL) / KL(Base‖IN), with a bootstrap
    interval over items (both KLs of an item resampled together). Each KL's mean must first be
    resolved above ``min_kl`` nats per token (lower end of its interval): a stage that did not move
    the model gives no ratio to read, so the verdict is inconclusive (RL = a copy of IN is never
    reproduced). Then reproduced when the ratio's interval lies below ``max_kl_ratio``,
    not_reproduced when it lies at or above it, inconclusive otherwise (with ``n_to_decide``).
    Regions play no part.
    """
    rows = np.stack([np.asarray(drift.in_rl.kl, dtype=float), np.asarray(drift.base_in.kl, dtype=float)], axis=1)
    level, n_resamples, n = t.confidence, t.bootstrap_resamples, rows.shape[0]
    means = {label: (float(rows[:, j].mean()), bootstrap_interval(rows[:, j], level=level, n_resamples=n_resamples))
             for j, label in enumerate(("KL(IN‖RL)", "KL(Base‖IN)"))}
    metrics = {"kl_in_rl": means["KL(IN‖RL)"][0], "kl_base_in": means["KL(Base‖IN)"][0],
               "kl_in_rl_interval": means["KL(IN‖RL)"][1].as_dict(),
               "kl_base_in_interval": means["KL(Base‖IN)"][1].as_dict(),
               "per_item_kl_in_rl": rows[:, 0].tolist(), "per_item_kl_base_in": rows[:, 1].tolist(),
               "n_items": n, "unit": "nats per token"}
    moved = tuple(requirement(f"{label} lower end (nats/token)", interval.low, ">", t.min_kl)
                  for label, (_, interval) in means.items())
    text = "; ".join(f"{label} {mean:.3g} [{interval.low:.3g}, {interval.high:.3g}]"
                     for label, (mean, interval) in means.items())
    still = [c.name.split(" lower")[0] for c in moved if not c.holds]
    if still:
        return Outcome("inconclusive", f"{' and '.join(still)} not resolved above {t.min_kl:g} nats/token: "
                       f"that stage did not measurably move the model, so there is no drift to compare ({text})",
                       metrics=metrics, conditions=moved)
    ratio = float(_ratio(rows))
    interval = bootstrap_interval(rows, _ratio, level=level, n_resamples=n_resamples)
    verdict = decide(interval, t.max_kl_ratio, "below")
    metrics["kl_ratio"] = ratio
    conditions = moved + (condition("KL(IN‖RL) / KL(Base‖IN)", ratio, interval, t.max_kl_ratio, "below"),)
    reason = (f"KL(IN‖RL) / KL(Base‖IN) = {ratio:.3g} [{interval.low:.3g}, {interval.high:.3g}], "
              f"threshold below {t.max_kl_ratio:g}; {text}")
    if verdict == "inconclusive":
        metrics["n_to_decide"] = n_to_decide(n, ratio, interval, t.max_kl_ratio)
        reason += f"; about {metrics['n_to_decide']} items would decide it" if metrics["n_to_decide"] else ""
    return Outcome(verdict, reason, ratio, interval, t.max_kl_ratio, metrics, conditions=conditions)
