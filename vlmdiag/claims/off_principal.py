"""RL learns off the principal directions (Zhu et al., "The Path Not Taken: RLVR Provably Learns
Off the Principals", arXiv 2511.08567, §4: RLVR keeps W's spectrum and principal subspace —
minimal spectral drift, little rotation of the top-k singular subspace — where SFT rotates and
distorts them).

Per LLM matrix and stage (:class:`~vlmdiag.measure.delta_stats.DeltaStats`): ``rotation``, the
mean sin² of the principal angles between the top-k left singular subspaces of W before and after,
and ``drift``, the relative change of W's top-k singular values. RL (IN → RL) is set against IN
(Base → IN), per region: the median over the region's matrices of log10(RL / IN), with a
bootstrap over its layers. A matrix whose ΔW is within ``floor_factor`` × its storage-precision
floor in either stage is left out: its rotation cannot be told from rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from vlmdiag.claims.registry import Outcome, claim, condition
from vlmdiag.claims.updates import (
    WeightThresholds,
    _cluster_intervals,
    _floor_conditions,
    _paired,
    _signal_to_floor,
    _within_floor,
)
from vlmdiag.regions import REGION_NAMES, Regions
from vlmdiag.stats import Interval

if TYPE_CHECKING:
    from vlmdiag.measure.weights import MatrixDelta, WeightDeltas

#: A ratio whose RL or IN value is 0 (W's subspace unchanged to the last bit) reads this far.
_LOG10_CAP = 12.0
_MEASURES = {"rotation": "principal-subspace rotation (mean sin² of the top-k principal angles)",
             "drift": "spectral drift (relative change of the top-k singular values)"}


class OffPrincipalThresholds(WeightThresholds):
    max_log10_rotation_ratio: float = Field(
        description="largest median log10(rotation RL / rotation IN) per region that counts as RL rotating less")
    max_log10_drift_ratio: float = Field(
        description="largest median log10(drift RL / drift IN) per region that counts as RL drifting less")
    bootstrap_resamples: int = Field(ge=100)


def _log10_ratio(rl: float, inn: float) -> float:
    if rl <= 0 and inn <= 0:
        return 0.0
    if rl <= 0 or inn <= 0:
        return -_LOG10_CAP if rl <= 0 else _LOG10_CAP
    return float(np.clip(np.log10(rl / inn), -_LOG10_CAP, _LOG10_CAP))


def _above_floor(m: MatrixDelta, factor: float) -> bool:
    return m.stats.frobenius > factor * m.stats.floor


@claim("updates.rl_off_principal",
       statement="RL preserves W's principal structure: in every region its update rotates W's top "
                 "singular subspace and drifts W's spectrum less than the IN update does",
       source="Zhu et al., arXiv 2511.08567, §4 (principal angles, spectral drift)", measurement="weight_spectra",
       needs=("origin",), thresholds=OffPrincipalThresholds)
def rl_off_principal(deltas: WeightDeltas, regions: Regions, t: OffPrincipalThresholds) -> Outcome:
    """Per region and measure (rotation, drift), the median over matrices of log10(RL / IN), with
    a cluster bootstrap over the region's layers, must lie below its threshold. Reproduced when
    all six hold, not_reproduced when one is resolved against, otherwise inconclusive."""
    signal = {f"{stage}_signal_to_floor": _signal_to_floor(deltas.select(stage)) for stage in ("rl", "in")}
    unresolved = [r for stage in ("rl", "in")
                  if (r := _within_floor(deltas.select(stage), stage, t.floor_factor)) is not None]
    if unresolved:
        return Outcome("inconclusive", "; ".join(unresolved), metrics=signal,
                       conditions=_floor_conditions(signal, t.floor_factor))
    f = t.floor_factor
    layers = [[(rl, inn) for rl, inn in layer if rl.stats.rotation is not None and inn.stats.rotation is not None
               and _above_floor(rl, f) and _above_floor(inn, f)] for layer in _paired(deltas, lambda m: m)]
    if not any(layers):
        return Outcome("inconclusive", "no LLM matrix has both an RL and an IN update above the storage-precision "
                       "floor with a principal subspace measured", metrics=signal,
                       conditions=_floor_conditions(signal, f))
    thresholds = {"rotation": t.max_log10_rotation_ratio, "drift": t.max_log10_drift_ratio}
    conditions = list(_floor_conditions(signal, f))
    metrics: dict = {**signal, "matrices": sum(len(layer) for layer in layers)}
    notes, missing = [], []
    for measure, threshold in thresholds.items():
        per_layer = [np.array([[_log10_ratio(getattr(rl.stats, measure), getattr(inn.stats, measure))
                                for rl, inn in layer]]) if layer else None for layer in layers]
        metrics[f"log10_{measure}_ratio_per_layer"] = [float(np.median(c)) if c is not None else None
                                                       for c in per_layer]
        metrics[f"log10_{measure}_ratio_by_region"] = {}
        for region in REGION_NAMES:
            clusters = [per_layer[i] for i in regions.ranges[region] if per_layer[i] is not None]
            if not clusters:
                missing.append(f"{region} has no matrix to compare")
                continue
            statistic = float(np.median(np.concatenate(clusters, axis=1)))
            (interval,) = _cluster_intervals(clusters, np.median, t.confidence, t.bootstrap_resamples)
            metrics[f"log10_{measure}_ratio_by_region"][region] = statistic
            conditions.append(condition(f"{region} median log10({measure} RL / IN)", statistic,
                                        Interval(min(interval.low, statistic), max(interval.high, statistic),
                                                 t.confidence), threshold, "below"))
            notes.append(f"{region} {measure} RL/IN 10^{statistic:+.2f}")
    for stage in ("rl", "in"):
        for measure in ("rotation", "drift", "max_angle"):
            metrics[f"{stage}_{measure}"] = deltas.llm_layer_values(stage, lambda m, a=measure: getattr(m.stats, a)).tolist()
    holds = [c.holds for c in conditions]
    verdict = ("not_reproduced" if False in holds else
               "reproduced" if all(h is True for h in holds) and not missing else "inconclusive")
    worst = max((c for c in conditions if c.interval is not None), key=lambda c: c.interval.high - c.threshold)
    reason = (f"median log10(RL / IN) per region: {'; '.join(notes)} over {metrics['matrices']} matrices "
              f"(RL rotates / drifts less below {t.max_log10_rotation_ratio:g} / {t.max_log10_drift_ratio:g}); "
              f"least clear: {worst.name} {worst.statistic:+.2f} [{worst.interval.low:+.2f}, {worst.interval.high:+.2f}]")
    if missing:
        reason += "; " + "; ".join(missing)
    return Outcome(verdict, reason, worst.statistic, worst.interval, worst.threshold, metrics,
                   series="log10_rotation_ratio_per_layer", conditions=tuple(conditions))
