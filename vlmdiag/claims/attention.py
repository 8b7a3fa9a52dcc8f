"""Where RL shifts attention from reasoning tokens to the image (paper §2.3, Eq. 1, Fig. 3)."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from vlmdiag.claims.rules import MODES, combine, decide_text, layer_list, region_means
from vlmdiag.claims.registry import Outcome, ProbeThresholds, claim, condition
from vlmdiag.measure.tables import AttentionComparison
from vlmdiag.regions import Regions
from vlmdiag.stats import bootstrap_interval, decide, n_to_decide, n_to_decide_all


class AttentionShiftThresholds(ProbeThresholds):
    basis: Literal["teacher_forced", "own"] = Field(
        description="which mode the verdict reads: teacher_forced (both models read one shared "
                    "response: the control) or own (each model's own response)")
    min_mid_late_increase: float = Field(
        description="R→V attention mass (share of a reasoning row's attention, 0..1): the Mid–Late "
                    "mean increase RL − IN must exceed this")
    min_margin_over_early: float = Field(
        description="the Mid–Late increase minus the Early increase (same units) must exceed this")
    sinks: Literal["include", "exclude"] = Field("include", description="which R→V mass the verdict reads: "
                                                 "on all visual keys, or without visual sink tokens (Kang et al. 2025)")
    sink_ratio: float = Field(20.0, gt=0, description="τ: a visual token is a sink at a layer when max_d |h_d| / RMS(h) >= τ")
    MEASUREMENT_SETTINGS: ClassVar[dict[str, str]] = {**ProbeThresholds.MEASUREMENT_SETTINGS, "sink_ratio": "sink_ratio"}


@claim("attention.r2v_shift_mid_late",
       statement="RL increases attention from reasoning tokens to visual tokens, mainly in mid–late "
                 "layers, not early",
       source="§2.3, Eq. 1, Fig. 3", measurement="attention", needs=("probes", "inference"),
       thresholds=AttentionShiftThresholds)
def r2v_shift_mid_late(m: AttentionComparison, regions: Regions, t: AttentionShiftThresholds) -> Outcome:
    """Reproduced when, in the ``basis`` mode, both hold with their bootstrap interval (over items)
    entirely above the threshold:

    1. the Mid–Late mean of the per-layer R→V mass increase RL − IN > ``min_mid_late_increase``;
    2. that increase minus Early's mean increase > ``min_margin_over_early`` (Early gains less).

    not_reproduced when either interval lies entirely at or below its threshold; else
    inconclusive. Items whose response has no reasoning token (NaN mass) are left out. Both modes
    and both normalisations (mass, per-visual-token mean) are reported per layer.
    """
    metrics: dict = {"basis": t.basis, "sinks": t.sinks}
    for mode in MODES if m.sinks is not None else ():  # visual sinks per layer, and the shift without them
        metrics.update({f"{mode}_{x}_visual_sinks": layer_list(m.sinks[mode][x].mean(axis=0)) for x in ("IN", "RL")})
        metrics[f"{mode}_mass_without_sinks_increase"] = layer_list(np.nanmean(
            m.mass_without_sinks[mode]["RL"] - m.mass_without_sinks[mode]["IN"], axis=0))
    if t.sinks == "exclude" and m.mass_without_sinks is None:
        return Outcome("inconclusive", "sinks: exclude, but the measurement has no mass without sinks", metrics=metrics)
    for mode in MODES:
        for kind, table in (("mass", m.mass), ("mean", m.mean)):
            for model in ("IN", "RL"):
                metrics[f"{mode}_{model}_{kind}"] = layer_list(np.nanmean(table[mode][model], axis=0)) \
                    if np.isfinite(table[mode][model]).any() else [None] * table[mode][model].shape[1]
            diff = table[mode]["RL"] - table[mode]["IN"]
            ok = np.isfinite(diff).all(axis=1)
            metrics[f"{mode}_{kind}_increase"] = (layer_list(diff[ok].mean(axis=0)) if ok.any()
                                                  else [None] * diff.shape[1])
    # Per-layer bootstrap intervals (over items) of the curves the verdict reads, for the figure's bands.
    level, n = t.confidence, t.bootstrap_resamples
    forced = m.mass[t.basis]
    for name, values in ((f"{t.basis}_IN_mass", forced["IN"]), (f"{t.basis}_RL_mass", forced["RL"]),
                         (f"{t.basis}_mass_increase", (forced["RL"] - forced["IN"])[
                             np.isfinite(forced["RL"] - forced["IN"]).all(axis=1)])):
        metrics[f"{name}_interval"] = _layer_intervals(values, level, n)
    read = m.mass if t.sinks == "include" else m.mass_without_sinks
    diff = read[t.basis]["RL"] - read[t.basis]["IN"]
    ok = np.isfinite(diff).all(axis=1)
    metrics["n_items"], metrics["n_items_used"] = len(m.item_ids), int(ok.sum())
    metrics["shared_sequence_from"] = {s: m.shared_from.count(s) for s in ("RL", "IN")}
    if ok.sum() < 2:
        metrics["n_to_decide"] = None  # unknown: no effect to extrapolate from
        return Outcome("inconclusive", f"{t.basis}: {int(ok.sum())} of {len(m.item_ids)} items had reasoning "
                       "tokens in both models; too few to measure an attention shift (no N to decide it can be "
                       "estimated without an observed effect)", metrics=metrics,
                       series=f"{t.basis}_mass_increase")
    by_region = region_means(diff[ok], regions)
    mid_late = np.concatenate([diff[ok][:, list(regions.ranges["Mid"])],
                               diff[ok][:, list(regions.ranges["Late"])]], axis=1).mean(axis=1)
    margin = mid_late - by_region["Early"]
    interval = bootstrap_interval(mid_late, level=level, n_resamples=n)
    margin_interval = bootstrap_interval(margin, level=level, n_resamples=n)
    statistic = float(mid_late.mean())
    verdict = combine(decide(interval, t.min_mid_late_increase, "above"),
                      decide(margin_interval, t.min_margin_over_early, "above"))
    metrics.update({
        "mid_late_increase": statistic, "early_increase": float(by_region["Early"].mean()),
        "margin_over_early": float(margin.mean()), "margin_interval": margin_interval.as_dict(),
        **{f"{r.lower()}_increase": float(v.mean()) for r, v in by_region.items()}})
    reason = (f"basis {t.basis}{'' if t.sinks == 'include' else ' (visual sinks excluded)'}: "
              f"R→V mass RL − IN over Mid–Late = {statistic:+.4f} ({level:.0%} CI "
              f"[{interval.low:+.4f}, {interval.high:+.4f}], threshold {t.min_mid_late_increase:g}); "
              f"Early {by_region['Early'].mean():+.4f}, margin {margin.mean():+.4f} "
              f"[{margin_interval.low:+.4f}, {margin_interval.high:+.4f}] (threshold {t.min_margin_over_early:g}); "
              f"N={int(ok.sum())}")
    conditions = (condition("Mid–Late R→V mass increase RL − IN", statistic, interval, t.min_mid_late_increase,
                            "above"),
                  condition("margin over Early", margin.mean(), margin_interval, t.min_margin_over_early, "above"))
    if verdict == "inconclusive":
        used = int(ok.sum())
        metrics["n_to_decide"] = n_to_decide_all([
            (n_to_decide(used, statistic, interval, t.min_mid_late_increase), statistic > t.min_mid_late_increase),
            (n_to_decide(used, float(margin.mean()), margin_interval, t.min_margin_over_early),
             float(margin.mean()) > t.min_margin_over_early)])
        reason += "; " + decide_text(metrics["n_to_decide"])
    return Outcome(verdict, reason, statistic, interval, t.min_mid_late_increase, metrics,
                   series=f"{t.basis}_mass_increase", conditions=conditions)


def _layer_intervals(values: np.ndarray, level: float, n_resamples: int) -> list[dict]:
    """Per layer (column of ``values`` [N, L]), the bootstrap interval of the mean over the items
    with a finite value (low and high None where fewer than two are)."""
    out = []
    for column in np.asarray(values, dtype=float).T:
        column = column[np.isfinite(column)]
        out.append(bootstrap_interval(column, level=level, n_resamples=n_resamples).as_dict()
                   if column.size >= 2 else {"low": None, "high": None, "level": level})
    return out
