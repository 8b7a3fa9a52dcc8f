"""Where and how RL changes the weights (paper §3.2, Figs. 5–6).

Energy is additive: a region's update energy is Σ‖ΔW‖_F² over its matrices, so its share of a
stage's total can be set against its share of the parameters (uniform noise gives 1.0×). RL and
IN are never compared by raw norm inside one claim except in ``updates.rl_smaller_than_in``,
which is about exactly that ratio.

Every statistic is read against the storage-precision floor (:class:`~vlmdiag.measure.weights.DeltaStats`
``floor``/``floor_sigma``: what rounding to the stored dtypes alone puts into ΔW). A stage whose
update energy is within ``floor_factor``² × its floor energy has no update to speak of: the verdict
is ``inconclusive``. A single value within ``floor_factor`` × its floor is only known to lie between
0 and that bound; the interval then spans both readings, so such values can never make a verdict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from vlmdiag.claims.registry import ClaimThresholds, Outcome, claim, condition, requirement
from vlmdiag.regions import REGION_NAMES, Regions
from vlmdiag.stats import Interval, decide

if TYPE_CHECKING:
    from vlmdiag.measure.weights import DeltaStats, MatrixDelta, WeightDeltas

STAGE_NAMES = {"in": "IN", "rl": "RL"}
#: A value within the floor may be as small as zero; ratios read at most this far (fp32 resolution).
_LOG10_CAP = float(-np.log10(np.finfo(np.float32).eps))


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
        f"{stage}_floor_frobenius_mean": deltas.llm_layer_values(stage, lambda m: m.stats.floor).tolist(),
        f"{stage}_vision_projector_frobenius_mean": {
            str(u): float(np.mean([m.stats.frobenius for m in deltas.matrices
                                   if m.stage == stage and m.unified == u]))
            for u in vision_and_projector},
    }


class WeightThresholds(ClaimThresholds):
    floor_factor: float = Field(
        ge=1, description="an update (a stage's energy, one ‖ΔW‖_F, one singular value) counts as signal "
                          "only above this multiple of its storage-precision floor")


def _within_floor(matrices: list[MatrixDelta], stage: str, factor: float, where: str = "") -> str | None:
    """The reason ``matrices`` hold no update of ``stage`` to speak of (none at all, or an energy
    Σ‖ΔW‖_F² within ``factor``² × the floor energy Σ floor²), or None when they hold one."""
    energy = sum(m.stats.frobenius ** 2 for m in matrices)
    floor = sum(m.stats.floor ** 2 for m in matrices)
    name = STAGE_NAMES[stage]
    if energy == 0:
        return f"{name} has no update at all{where} (every ΔW is zero: are the two checkpoints the same?)"
    if energy <= factor ** 2 * floor:
        return (f"{name}'s update{where} is within the storage-precision floor: ‖ΔW‖_F {energy ** 0.5:.3g} "
                f"against {floor ** 0.5:.3g} from rounding to the stored dtypes alone "
                f"({(energy / floor) ** 0.5:.2f}x; signal needs > {factor:g}x)")
    return None


def _signal_to_floor(matrices: list[MatrixDelta]) -> float | None:
    """‖ΔW‖_F over all ``matrices`` divided by their floor (None when storage rounds nothing)."""
    floor = sum(m.stats.floor ** 2 for m in matrices)
    return (sum(m.stats.frobenius ** 2 for m in matrices) / floor) ** 0.5 if floor > 0 else None


def _floor_conditions(signal: dict[str, float | None], factor: float) -> tuple:
    """The floor checks a rule reads, as conditions: per stage ``‖ΔW‖_F / floor > factor``
    (``signal``: ``{STAGE_signal_to_floor[...]: ratio}``; a stage whose storage rounds nothing
    has no floor to check)."""
    return tuple(requirement(f"{STAGE_NAMES[key.split('_')[0]]} ‖ΔW‖_F / storage-precision floor"
                             + (" in Mid–Late" if key.endswith("mid_late") else ""), ratio, ">", factor)
                 for key, ratio in signal.items() if ratio is not None)


class EnergyMidThresholds(WeightThresholds):
    min_mid_concentration: float = Field(
        gt=0, description="Mid's share of a stage's update energy divided by its share of parameters")


@claim("updates.energy_mid",
       statement="Both IN and RL updates concentrate their energy in Mid layers",
       source="§3.2.1, Fig. 5", measurement="weight_deltas", thresholds=EnergyMidThresholds)
def energy_mid(deltas: WeightDeltas, regions: Regions, t: EnergyMidThresholds) -> Outcome:
    """Per stage, each region's energy above the floor (Σ‖ΔW‖_F² − Σ floor², the rounding's
    expected energy taken out) as a share of the stage's, over its share of the parameters."""
    metrics, checks, lines, unresolved, conditions = {}, [], [], [], []
    for stage in deltas.stages:
        matrices = deltas.select(stage)
        metrics[f"{stage}_signal_to_floor"] = ratio = _signal_to_floor(matrices)
        conditions += _floor_conditions({f"{stage}_signal_to_floor": ratio}, t.floor_factor)
        if (reason := _within_floor(matrices, stage, t.floor_factor)) is not None:
            unresolved.append(reason)
            continue
        energy = deltas.llm_layer_values(stage, lambda m: m.stats.frobenius ** 2, np.sum)
        floor = deltas.llm_layer_values(stage, lambda m: m.stats.floor ** 2, np.sum)
        params = deltas.llm_layer_values(stage, lambda m: m.numel, np.sum)
        region_energy = {r: max(float(np.nansum(energy[list(rng)]) - np.nansum(floor[list(rng)])), 0.0)
                         for r, rng in regions.ranges.items()}
        region_params = {r: float(np.nansum(params[list(rng)])) for r, rng in regions.ranges.items()}
        total_e, total_p = sum(region_energy.values()), sum(region_params.values())
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
    if unresolved:
        return Outcome("inconclusive", "; ".join(unresolved + lines), metrics=metrics,
                       conditions=tuple(conditions))
    statistic = min(c for c, _ in checks)
    verdict = decide(_exact(statistic), t.min_mid_concentration, "above")
    if verdict == "reproduced" and not all(densest for _, densest in checks):
        verdict = "not_reproduced"
    if "in" not in deltas.stages:
        lines.append("IN not checked: no --origin")
    return Outcome(verdict, "; ".join(lines), statistic, _exact(statistic), t.min_mid_concentration,
                   metrics, series="rl_frobenius_mean", conditions=tuple(conditions))


class SmallerThresholds(WeightThresholds):
    max_log10_ratio: float = Field(
        description="largest median log10(‖ΔRL‖_F / ‖ΔIN‖_F) over LLM matrices that counts as smaller "
                    "(-1: one order of magnitude)")
    bootstrap_resamples: int = Field(ge=100)


@claim("updates.rl_smaller_than_in",
       statement="RL deltas are 1–2 orders of magnitude smaller than IN deltas",
       source="§3.2.1, Fig. 5 axes", measurement="weight_deltas", needs=("origin",),
       thresholds=SmallerThresholds)
def rl_smaller_than_in(deltas: WeightDeltas, regions: Regions, t: SmallerThresholds) -> Outcome:
    """The median over every LLM matrix updated in both stages of log10(‖ΔRL‖_F/‖ΔIN‖_F), with a
    bootstrap over layers (clusters of unequal size: every matrix counts). A norm within its floor
    reads at the floor for the statistic; the interval spans it read at the floor and at zero."""
    unresolved = [r for stage in ("rl", "in")
                  if (r := _within_floor(deltas.select(stage), stage, t.floor_factor)) is not None]
    signal = {f"{stage}_signal_to_floor": _signal_to_floor(deltas.select(stage)) for stage in ("rl", "in")}
    if unresolved:
        return Outcome("inconclusive", "; ".join(unresolved), metrics=signal,
                       conditions=_floor_conditions(signal, t.floor_factor))
    f = t.floor_factor
    pairs = [[(rl, inn) for rl, inn in layer if rl.stats.frobenius > 0 and inn.stats.frobenius > 0]
             for layer in _paired(deltas, lambda m: m)]
    clusters = [np.array([_ratio_readings(rl.stats, inn.stats, f) for rl, inn in layer]).T for layer in pairs if layer]
    if not clusters:
        raise ValueError("no LLM matrix has both a non-zero RL and a non-zero IN update")
    readings = np.concatenate(clusters, axis=1)  # [point, low, high] × matrices
    statistic = float(np.median(readings[0]))
    point, low, high = _cluster_intervals(clusters, np.median, t.confidence, t.bootstrap_resamples)
    interval = Interval(low.low, high.high, t.confidence)
    within = {stage: sum(pair[i].stats.frobenius <= f * pair[i].stats.floor for layer in pairs for pair in layer)
              for i, stage in enumerate(("rl", "in"))}
    rl_f = [m.stats.frobenius for m in deltas.select("rl")]
    in_f = [m.stats.frobenius for m in deltas.select("in")]
    metrics = {
        "median_log10_ratio": statistic,
        "median_ratio": 10 ** statistic,
        "matrices": int(readings.shape[1]),
        "rl_within_floor": within["rl"], "in_within_floor": within["in"], **signal,
        "ratio_of_medians": float(np.median(rl_f) / np.median(in_f)),
        "rl_relative_median": float(np.median([m.stats.relative for m in deltas.select("rl")])),
        "in_relative_median": float(np.median([m.stats.relative for m in deltas.select("in")])),
        "log10_ratio_per_layer": [float(np.median(r)) if r else None for r in
                                  [[np.log10(a.stats.frobenius / b.stats.frobenius) for a, b in layer] for layer in pairs]],
        **_per_layer(deltas, "rl"), **_per_layer(deltas, "in"),
    }
    reason = (f"median per-matrix ‖ΔRL‖/‖ΔIN‖ = {10 ** statistic:.3g} (10^{statistic:.2f}, "
              f"{t.confidence:.0%} CI 10^[{interval.low:.2f}, {interval.high:.2f}] over {readings.shape[1]} "
              f"matrices); threshold 10^{t.max_log10_ratio:g}")
    if within["rl"] or within["in"]:
        reason += (f"; within the storage-precision floor ({f:g}x): RL {within['rl']}, IN {within['in']} "
                   "matrices (the interval spans them read at the floor and at zero)")
    return Outcome(decide(interval, t.max_log10_ratio, "below"), reason, statistic, interval,
                   t.max_log10_ratio, metrics, series="log10_ratio_per_layer",
                   conditions=(*_floor_conditions(signal, f),
                               condition("median log10(‖ΔRL‖/‖ΔIN‖)", statistic, interval, t.max_log10_ratio,
                                         "below")))


def _ratio_readings(rl: DeltaStats, inn: DeltaStats, factor: float) -> tuple[float, float, float]:
    """log10(‖ΔRL‖/‖ΔIN‖) read three ways: (both norms at least their floor bound, the lowest and the
    highest the floors allow). A norm within ``factor`` × floor is only known to be at most that."""
    rl_bound, in_bound = max(rl.frobenius, factor * rl.floor), max(inn.frobenius, factor * inn.floor)
    point = float(np.log10(rl_bound / in_bound))
    low = point if rl.frobenius > factor * rl.floor else -_LOG10_CAP
    high = point if inn.frobenius > factor * inn.floor else _LOG10_CAP
    return point, min(low, point), max(high, point)


class SteeperThresholds(WeightThresholds):
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
    """Per matrix, mean log(σ_k/σ_1) at k = 10/20/30/40, RL − IN, averaged per layer; bootstrap over
    Mid–Late layers. A σ_k within ``floor_factor`` × ``floor_sigma`` reads at that bound (the
    flattest it can be); the interval spans it read at the bound and at zero (the steepest).
    A matrix whose σ_1 is within the floor in either stage has no direction to compare."""
    mid_late = [layer for name in ("Mid", "Late") for layer in regions.ranges[name]]
    in_mid_late = lambda stage: [m for m in deltas.select(stage) if m.layer in mid_late]  # noqa: E731
    signal = {f"{stage}_signal_to_floor_mid_late": _signal_to_floor(in_mid_late(stage)) for stage in ("rl", "in")}
    unresolved = [r for stage in ("rl", "in")
                  if (r := _within_floor(in_mid_late(stage), stage, t.floor_factor, " in Mid–Late")) is not None]
    if unresolved:
        return Outcome("inconclusive", "; ".join(unresolved), metrics=signal,
                       conditions=_floor_conditions(signal, t.floor_factor))

    def decay(pair):
        rl, inn = (_decay_readings(m.stats, t.floor_factor) for m in pair)
        if rl is None or inn is None:
            return None
        ranks = sorted(set(rl) & set(inn))
        if not ranks:
            return None
        (rl_flat, rl_steep), (in_flat, in_steep) = (np.mean([r[k] for k in ranks], axis=0) for r in (rl, inn))
        return rl_flat - in_flat, rl_steep - in_flat, rl_flat - in_steep  # point, low, high

    layers = _paired(deltas, lambda m: m)
    per_layer = np.array([np.mean(d, axis=0) if (d := [x for x in map(decay, layer) if x is not None])
                          else (np.nan,) * 3 for layer in layers])  # [layers, (point, low, high)]
    samples = per_layer[mid_late]
    samples = samples[~np.isnan(samples[:, 0])]
    if samples.size == 0:
        if any(_decay_readings(m.stats, t.floor_factor) is None for i in mid_late for pair in layers[i] for m in pair):
            return Outcome("inconclusive", "no Mid–Late matrix has a top singular value above the "
                           "storage-precision floor in both RL and IN", metrics=signal,
                           conditions=_floor_conditions(signal, t.floor_factor))
        raise ValueError("no Mid–Late matrix has rank ≥ 10, so no spectrum rank 10/20/30/40 exists")
    statistic = float(samples[:, 0].mean())
    _, low, high = _cluster_intervals([row[:, None] for row in samples], np.mean, t.confidence, t.bootstrap_resamples)
    interval = Interval(low.low, high.high, t.confidence)
    early = per_layer[list(regions.ranges["Early"]), 0]
    metrics = {"mean_log_ratio_difference_mid_late": statistic, **signal,
               "mean_log_ratio_difference_early": float(np.nanmean(early)) if np.isfinite(early).any() else None,
               "log_ratio_difference_per_layer": [None if np.isnan(v) else float(v) for v in per_layer[:, 0]]}
    for stage in ("rl", "in"):
        for k in (10, 20, 30, 40):
            metrics[f"{stage}_log_ratio_at_{k}"] = deltas.llm_layer_values(
                stage, lambda m, k=k: m.stats.log_ratio.get(k)).tolist()
        metrics[f"{stage}_effective_rank"] = deltas.llm_layer_values(stage, lambda m: m.stats.effective_rank).tolist()
        metrics[f"{stage}_stable_rank"] = deltas.llm_layer_values(stage, lambda m: m.stats.stable_rank).tolist()
        metrics[f"{stage}_log_floor_ratio"] = deltas.llm_layer_values(
            stage, lambda m: _log_floor_ratio(m.stats, t.floor_factor)).tolist()
        metrics[f"{stage}_rank_ratio_above_floor"] = deltas.llm_layer_values(
            stage, lambda m: _rank_ratio_above_floor(m.stats, t.floor_factor)).tolist()
    reason = (f"Mid–Late mean log(σk/σ1) RL − IN = {statistic:+.3f} ({t.confidence:.0%} CI "
              f"[{interval.low:+.3f}, {interval.high:+.3f}] over {len(samples)} layers); "
              f"steeper means below {t.max_log_ratio_difference:g}")
    if not np.allclose(samples[:, 1], samples[:, 2]):
        reason += f"; some σ_k are within the storage-precision floor ({t.floor_factor:g}x), read at it and at zero"
    return Outcome(decide(interval, t.max_log_ratio_difference, "below"), reason, statistic, interval,
                   t.max_log_ratio_difference, metrics, series="log_ratio_difference_per_layer",
                   conditions=(*_floor_conditions(signal, t.floor_factor),
                               condition("Mid–Late log(σk/σ1) RL − IN", statistic, interval,
                                         t.max_log_ratio_difference, "below")))


def _log_floor_ratio(stats: DeltaStats, factor: float) -> float | None:
    """log(factor · floor_sigma / σ_1): the least log(σ_k/σ_1) that rises above the floor."""
    if stats.singular_values is None:
        return None
    bound = factor * stats.floor_sigma / stats.singular_values[0]
    return float(np.log(max(bound, np.finfo(np.float32).eps)))


def _rank_ratio_above_floor(stats: DeltaStats, factor: float) -> float | None:
    """Share of ΔW's singular values above ``factor`` × floor_sigma (and above 10⁻³·σ_1, numerical
    zero): the ranks storage rounding cannot explain. None without a full spectrum."""
    if stats.spectrum is None or len(stats.spectrum) == 0:
        return None
    bound = max(factor * stats.floor_sigma, 1e-3 * float(stats.spectrum[0]))
    return float((stats.spectrum > bound).sum()) / len(stats.spectrum)


def _decay_readings(stats: DeltaStats, factor: float) -> dict[int, tuple[float, float]] | None:
    """Per rank k, log(σ_k/σ_1) read (flattest, steepest): a σ_k within ``factor`` × floor_sigma
    is only known to lie between 0 (the fp32 floor of ``log_ratio``) and that bound. None when
    σ_1 itself is within the floor (or there is no spectrum)."""
    bound = _log_floor_ratio(stats, factor)
    if bound is None or bound >= 0:
        return None
    steepest = float(np.log(np.finfo(np.float32).eps))
    return {k: (max(r, bound), r if r > bound else steepest) for k, r in stats.log_ratio.items()}


def _cluster_intervals(clusters: list[np.ndarray], statistic, level: float, n_resamples: int,
                       seed: int = 0) -> list[Interval]:
    """Percentile bootstrap intervals of ``statistic`` with clusters (layers) as the resampling unit.

    Args:
        clusters: arrays ``[readings, k_i]``; the k_i values of a cluster may differ (every value
            counts; a resample draws whole clusters with replacement and pools their values).
        statistic: reduces ``[readings, n]`` along axis 1 (``np.median``, ``np.mean``).

    Returns:
        One interval per reading, all from the same resamples (the draws of
        :func:`vlmdiag.stats.bootstrap_interval` with the same seed, so equal-size clusters give
        its intervals).
    """
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(clusters), size=(n_resamples, len(clusters)))
    if len({c.shape for c in clusters}) == 1:  # equal-size clusters: the same pooling, vectorized
        stacked = np.stack(clusters)[index]  # [resamples, clusters, readings, k]
        pooled = stacked.transpose(0, 2, 1, 3).reshape(n_resamples, stacked.shape[2], -1)
        values = statistic(pooled, axis=2)
    else:
        values = np.array([statistic(np.concatenate([clusters[i] for i in row], axis=1), axis=1) for row in index])
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha], axis=0)
    return [Interval(float(a), float(b), level) for a, b in zip(low, high)]


def _paired(deltas: WeightDeltas, value) -> list[list[tuple]]:
    """Per LLM layer, ``(value(rl matrix), value(in matrix))`` for matrices present in both stages."""
    ins = {m.name: m for m in deltas.select("in")}
    layers: list[list[tuple]] = [[] for _ in range(deltas.num_llm_layers)]
    for m in deltas.select("rl"):
        if m.name in ins:
            layers[m.layer].append((value(m), value(ins[m.name])))
    return layers
