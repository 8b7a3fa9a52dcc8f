"""Where and how RL changes the weights (paper §3.2, Figs. 5–6).

Energy is additive: a region's update energy is Σ‖ΔW‖_F² over its matrices, so its share of a
stage's total can be set against its share of the parameters (uniform noise gives 1.0×). RL and
IN are never compared by raw norm inside one claim except in ``updates.rl_smaller_than_in``,
which is about exactly that ratio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from vlmdiag.claims.registry import ClaimThresholds, Outcome, claim, condition
from vlmdiag.regions import REGION_NAMES, Regions
from vlmdiag.stats import Interval, bootstrap_interval, decide

if TYPE_CHECKING:
    from vlmdiag.measure.weights import MatrixDelta, WeightDeltas

STAGE_NAMES = {"in": "IN", "rl": "RL"}


def _exact(value: float) -> Interval:
    return Interval(value, value, 1.0)


def _per_layer(deltas: WeightDeltas, stage: str) -> dict[str, list]:
    """Per-layer arrays of one stage for the report (LLM layers at unified index 1…L, vision and
    projector at −N…0)."""
    frob = lambda m: m.stats.frobenius  # noqa: E731
    rel = lambda m: m.stats.relative  # noqa: E731
    vision_and_projector = sorted({m.unified for m in deltas.matrices if m.component != "llm"})
    return {
        f"{stage}_frobenius_mean": deltas.llm_layer_values(stage, frob).tolist(),
        f"{stage}_frobenius_sum": deltas.llm_layer_values(stage, frob, np.sum).tolist(),
        f"{stage}_relative_mean": deltas.llm_layer_values(stage, rel).tolist(),
        f"{stage}_vision_projector_frobenius_mean": {
            str(u): float(np.mean([m.stats.frobenius for m in deltas.matrices
                                   if m.stage == stage and m.unified == u]))
            for u in vision_and_projector},
    }


class EnergyMidThresholds(ClaimThresholds):
    min_mid_concentration: float = Field(
        gt=0, description="Mid's share of a stage's update energy divided by its share of parameters")


@claim("updates.energy_mid",
       statement="Both IN and RL updates concentrate their energy in Mid layers",
       source="§3.2.1, Fig. 5", measurement="weight_deltas", thresholds=EnergyMidThresholds)
def energy_mid(deltas: WeightDeltas, regions: Regions, t: EnergyMidThresholds) -> Outcome:
    metrics, checks, lines, conditions = {}, [], [], []
    for stage in deltas.stages:
        energy = deltas.llm_layer_values(stage, lambda m: m.stats.frobenius ** 2, np.sum)
        params = deltas.llm_layer_values(stage, lambda m: m.numel, np.sum)
        region_energy = {r: float(np.nansum(energy[list(rng)])) for r, rng in regions.ranges.items()}
        region_params = {r: float(np.nansum(params[list(rng)])) for r, rng in regions.ranges.items()}
        total_e, total_p = sum(region_energy.values()), sum(region_params.values())
        if total_e == 0:
            raise ValueError(f"{STAGE_NAMES[stage]} has no update at all (every ΔW is zero): "
                             "are the two checkpoints the same?")
        share = {r: region_energy[r] / total_e for r in REGION_NAMES}
        param_share = {r: region_params[r] / total_p for r in REGION_NAMES}
        concentration = {r: share[r] / param_share[r] for r in REGION_NAMES}
        densest = max(REGION_NAMES, key=concentration.get)
        checks.append((concentration["Mid"], densest == "Mid"))
        name = STAGE_NAMES[stage]
        others = max(concentration["Early"], concentration["Late"])
        conditions += [
            condition(f"{name} Mid concentration (energy share / parameter share)", concentration["Mid"],
                      _exact(concentration["Mid"]), t.min_mid_concentration, "above"),
            condition(f"{name} Mid concentration − the largest other region's", concentration["Mid"] - others,
                      _exact(concentration["Mid"] - others), 0.0, "above")]
        metrics.update({f"{stage}_energy_share": share, f"{stage}_parameter_share": param_share,
                        f"{stage}_concentration": concentration, **_per_layer(deltas, stage)})
        lines.append(f"{STAGE_NAMES[stage]}: Mid holds {share['Mid']:.0%} of the update energy with "
                     f"{param_share['Mid']:.0%} of the parameters ({concentration['Mid']:.2f}x; "
                     f"densest region {densest})")
    statistic = min(c for c, _ in checks)
    verdict = decide(_exact(statistic), t.min_mid_concentration, "above")
    if verdict == "reproduced" and not all(densest for _, densest in checks):
        verdict = "not_reproduced"
    if "in" not in deltas.stages:
        lines.append("IN not checked: no --origin")
    return Outcome(verdict, "; ".join(lines), statistic, _exact(statistic), t.min_mid_concentration,
                   metrics, series="rl_frobenius_mean", conditions=tuple(conditions))


class SmallerThresholds(ClaimThresholds):
    max_log10_ratio: float = Field(
        description="largest median log10(‖ΔRL‖_F / ‖ΔIN‖_F) over LLM matrices that counts as smaller "
                    "(-1: one order of magnitude)")
    bootstrap_resamples: int = Field(ge=100)


@claim("updates.rl_smaller_than_in",
       statement="RL deltas are 1–2 orders of magnitude smaller than IN deltas",
       source="§3.2.1, Fig. 5 axes", measurement="weight_deltas", needs=("origin",),
       thresholds=SmallerThresholds)
def rl_smaller_than_in(deltas: WeightDeltas, regions: Regions, t: SmallerThresholds) -> Outcome:
    pairs = _paired(deltas, lambda m: m.stats.frobenius)
    rows = [[np.log10(rl / inn) for rl, inn in layer if inn > 0 and rl > 0] for layer in pairs]
    rows = [r for r in rows if r]
    if not rows:
        raise ValueError("no LLM matrix has both a non-zero RL and a non-zero IN update")
    width = min(len(r) for r in rows)
    samples = np.array([r[:width] for r in rows])  # [layers, matrices]: layers are resampled
    statistic = float(np.median(samples))
    interval = bootstrap_interval(samples, np.median, level=t.confidence, n_resamples=t.bootstrap_resamples)
    rl_f = [m.stats.frobenius for m in deltas.select("rl")]
    in_f = [m.stats.frobenius for m in deltas.select("in")]
    metrics = {
        "median_log10_ratio": statistic,
        "median_ratio": 10 ** statistic,
        "ratio_of_medians": float(np.median(rl_f) / np.median(in_f)),
        "rl_relative_median": float(np.median([m.stats.relative for m in deltas.select("rl")])),
        "in_relative_median": float(np.median([m.stats.relative for m in deltas.select("in")])),
        "log10_ratio_per_layer": [float(np.median(r)) if r else None for r in
                                  [[np.log10(a / b) for a, b in layer if a > 0 and b > 0] for layer in pairs]],
        **_per_layer(deltas, "rl"), **_per_layer(deltas, "in"),
    }
    reason = (f"median per-matrix ‖ΔRL‖/‖ΔIN‖ = {10 ** statistic:.3g} (10^{statistic:.2f}, "
              f"{t.confidence:.0%} CI 10^[{interval.low:.2f}, {interval.high:.2f}]); "
              f"threshold 10^{t.max_log10_ratio:g}")
    return Outcome(decide(interval, t.max_log10_ratio, "below"), reason, statistic, interval,
                   t.max_log10_ratio, metrics, series="log10_ratio_per_layer",
                   conditions=(condition("median log10(‖ΔRL‖/‖ΔIN‖)", statistic, interval, t.max_log10_ratio,
                                         "below"),))


class SteeperThresholds(ClaimThresholds):
    max_log_ratio_difference: float = Field(
        description="largest mean (RL − IN) of log(σ_k/σ_1), k=10/20/30/40, over Mid–Late layers that "
                    "counts as steeper (0: any steeper decay)")
    bootstrap_resamples: int = Field(ge=100)


@claim("updates.rl_steeper_mid_late",
       statement="RL updates have a steeper singular-value decay than IN in Mid–Late layers: "
                 "fewer, dominant directions",
       source="§3.2.2, Fig. 6", measurement="weight_spectra", needs=("origin",),
       thresholds=SteeperThresholds)
def rl_steeper_mid_late(deltas: WeightDeltas, regions: Regions, t: SteeperThresholds) -> Outcome:
    def decay(pair):
        rl, inn = pair
        ranks = sorted(set(rl.stats.log_ratio) & set(inn.stats.log_ratio))
        if not ranks:
            return None
        return np.mean([rl.stats.log_ratio[k] for k in ranks]) - np.mean([inn.stats.log_ratio[k] for k in ranks])

    per_layer = np.array([np.mean(d) if (d := [x for x in map(decay, layer) if x is not None]) else np.nan
                          for layer in _paired(deltas, lambda m: m)])
    mid_late = [layer for name in ("Mid", "Late") for layer in regions.ranges[name]]
    samples = per_layer[mid_late]
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        raise ValueError("no Mid–Late matrix has rank ≥ 10, so no spectrum rank 10/20/30/40 exists")
    statistic = float(samples.mean())
    interval = bootstrap_interval(samples, np.mean, level=t.confidence, n_resamples=t.bootstrap_resamples)
    early = per_layer[list(regions.ranges["Early"])]
    metrics = {"mean_log_ratio_difference_mid_late": statistic,
               "mean_log_ratio_difference_early": float(np.nanmean(early)) if np.isfinite(early).any() else None,
               "log_ratio_difference_per_layer": [None if np.isnan(v) else float(v) for v in per_layer]}
    for stage in ("rl", "in"):
        for k in (10, 20, 30, 40):
            metrics[f"{stage}_log_ratio_at_{k}"] = deltas.llm_layer_values(
                stage, lambda m, k=k: m.stats.log_ratio.get(k)).tolist()
        metrics[f"{stage}_effective_rank"] = deltas.llm_layer_values(stage, lambda m: m.stats.effective_rank).tolist()
        metrics[f"{stage}_stable_rank"] = deltas.llm_layer_values(stage, lambda m: m.stats.stable_rank).tolist()
    reason = (f"Mid–Late mean log(σk/σ1) RL − IN = {statistic:+.3f} ({t.confidence:.0%} CI "
              f"[{interval.low:+.3f}, {interval.high:+.3f}] over {samples.size} layers); "
              f"steeper means below {t.max_log_ratio_difference:g}")
    return Outcome(decide(interval, t.max_log_ratio_difference, "below"), reason, statistic, interval,
                   t.max_log_ratio_difference, metrics, series="log_ratio_difference_per_layer",
                   conditions=(condition("Mid–Late log(σk/σ1) RL − IN", statistic, interval,
                                         t.max_log_ratio_difference, "below"),))


def _paired(deltas: WeightDeltas, value) -> list[list[tuple]]:
    """Per LLM layer, ``(value(rl matrix), value(in matrix))`` for matrices present in both stages."""
    ins = {m.name: m for m in deltas.select("in")}
    layers: list[list[tuple]] = [[] for _ in range(deltas.num_llm_layers)]
    for m in deltas.select("rl"):
        if m.name in ins:
            layers[m.layer].append((value(m), value(ins[m.name])))
    return layers
