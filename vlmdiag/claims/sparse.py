"""RL updates a small subnetwork (Mukherjee et al., "Reinforcement Learning Finetunes Small
Subnetworks in Large Language Models", arXiv 2505.11711, §3–4: RL updates 5–30 % of the
parameters, in nearly every matrix, and the updates are nearly full-rank; SFT updates are dense).

An element counts as updated when its stored ΔW is one that rounding an unchanged value to the
checkpoints' dtypes cannot produce (:func:`~vlmdiag.measure.delta_stats.count_updated`). The rank
of ΔW counts singular values above both the storage-precision floor (``floor_factor`` ×
``floor_sigma``) and the numerical resolution (:data:`RANK_RTOL` × σ_1); ranks between the two are
only known to lie in that range, so the rank ratio is read both ways and its interval spans them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from vlmdiag.claims.registry import Outcome, claim, condition, requirement
from vlmdiag.claims.updates import (
    WeightThresholds,
    _cluster_intervals,
    _floor_conditions,
    _signal_to_floor,
    _within_floor,
)
from vlmdiag.regions import REGION_NAMES, Regions
from vlmdiag.stats import Interval

if TYPE_CHECKING:
    from vlmdiag.measure.weights import DeltaStats, MatrixDelta, WeightDeltas

#: Singular values below this share of σ_1 are numerical zero (the Gram spectrum's tail is
#: accurate to ~6e-4·σ_1; ``torch.linalg.matrix_rank`` would use ~1e-4 for these shapes).
RANK_RTOL = 1e-3


class SparseThresholds(WeightThresholds):
    max_updated_fraction: float = Field(
        gt=0, le=1, description="largest share of RL-updated LLM parameters that counts as sparse (paper: 5–30 %)")
    min_sparser_than_in: float = Field(
        description="IN's updated share − RL's must exceed this (RL sparser than the IN update)")
    min_matrix_share: float = Field(
        ge=0, le=1, description="share of LLM matrices RL must update at all ('nearly every matrix')")
    min_rank_ratio: float = Field(
        ge=0, le=1, description="median rank(ΔRL)/min(m, n) over LLM matrices above which it is nearly full-rank")
    bootstrap_resamples: int = Field(ge=100)


def rank_readings(stats: DeltaStats, factor: float) -> tuple[float, float] | None:
    """rank(ΔW)/min(m, n) read (lowest, highest): singular values above ``factor`` × floor_sigma
    (and above :data:`RANK_RTOL`·σ_1), and above RANK_RTOL·σ_1 alone. None without a spectrum."""
    sigma = stats.spectrum
    if sigma is None or len(sigma) == 0:
        return None if stats.frobenius > 0 else (0.0, 0.0)
    numerical = RANK_RTOL * float(sigma[0])
    above_floor = max(numerical, factor * stats.floor_sigma)
    return float((sigma > above_floor).sum()) / len(sigma), float((sigma > numerical).sum()) / len(sigma)


def _share_interval(clusters: list[np.ndarray], level: float, n_resamples: int, seed: int = 0) -> Interval:
    """Bootstrap interval of Σ row 0 / Σ row 1 (updated elements / elements), layers resampled."""
    rng = np.random.default_rng(seed)
    totals = np.array([c.sum(axis=1) for c in clusters])  # [layers, 2]
    index = rng.integers(0, len(clusters), size=(n_resamples, len(clusters)))
    sums = totals[index].sum(axis=1)
    values = sums[:, 0] / np.maximum(sums[:, 1], 1)
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return Interval(float(low), float(high), level)


def _layer_shares(matrices: list[MatrixDelta], num_layers: int) -> list[np.ndarray]:
    """Per LLM layer ``[2, k]``: (updated elements, elements) of its matrices."""
    layers: list[list[tuple[int, int]]] = [[] for _ in range(num_layers)]
    for m in matrices:
        layers[m.layer].append((m.stats.updated, m.numel))
    return [np.array(layer, dtype=float).T if layer else np.zeros((2, 0)) for layer in layers]


@claim("updates.rl_sparse",
       statement="RL updates a small subnetwork: 5–30 % of the parameters, in nearly every matrix, "
                 "with nearly full-rank updates; the IN update is dense",
       source="Mukherjee et al., arXiv 2505.11711, §3–4 (Tables 1–3)", measurement="weight_spectra",
       needs=("origin",), thresholds=SparseThresholds)
def rl_sparse(deltas: WeightDeltas, regions: Regions, t: SparseThresholds) -> Outcome:
    """Share of RL-updated LLM parameters (Σ updated / Σ elements, bootstrap over layers) below
    ``max_updated_fraction``; IN − RL share above ``min_sparser_than_in`` (paired bootstrap over
    layers); share of LLM matrices with any RL update ≥ ``min_matrix_share``; median RL rank ratio
    above ``min_rank_ratio``. Reproduced when every condition holds, not_reproduced when one is
    resolved against, otherwise inconclusive."""
    signal = {f"{stage}_signal_to_floor": _signal_to_floor(deltas.select(stage)) for stage in ("rl", "in")}
    unresolved = [r for stage in ("rl", "in")
                  if (r := _within_floor(deltas.select(stage), stage, t.floor_factor)) is not None]
    if unresolved:
        return Outcome("inconclusive", "; ".join(unresolved), metrics=signal,
                       conditions=_floor_conditions(signal, t.floor_factor))
    if any(m.stats.updated is None for stage in ("rl", "in") for m in deltas.select(stage)):
        raise ValueError("the weight measurement has no updated-element counts (made with extras=False?)")
    level, n = t.confidence, t.bootstrap_resamples
    layers = deltas.num_llm_layers
    shares = {stage: _layer_shares(deltas.select(stage), layers) for stage in ("rl", "in")}
    used = [i for i in range(layers) if shares["rl"][i].size and shares["in"][i].size]
    overall = {stage: float(sum(shares[stage][i][0].sum() for i in used) / sum(shares[stage][i][1].sum() for i in used))
               for stage in ("rl", "in")}
    rl_interval = _share_interval([shares["rl"][i] for i in used], level, n)
    # IN − RL, paired by layer: each resample draws the same layers for both stages.
    paired = [np.concatenate([shares["in"][i], shares["rl"][i]], axis=0) for i in used]  # [4, k]
    rng = np.random.default_rng(0)
    index = rng.integers(0, len(paired), size=(n, len(paired)))
    totals = np.array([p.sum(axis=1) for p in paired])[index].sum(axis=1)  # [n, 4]
    differences = totals[:, 0] / totals[:, 1] - totals[:, 2] / totals[:, 3]
    alpha = (1 - level) / 2
    difference = overall["in"] - overall["rl"]
    diff_interval = Interval(*(float(q) for q in np.quantile(differences, [alpha, 1 - alpha])), level)
    rl_matrices = deltas.select("rl")
    touched = sum(m.stats.updated > 0 for m in rl_matrices) / len(rl_matrices)
    rank_layers: list[list[tuple[float, float]]] = [[] for _ in range(layers)]
    for m in rl_matrices:
        if (reading := rank_readings(m.stats, t.floor_factor)) is not None:
            rank_layers[m.layer].append(reading)
    rank_clusters = [np.array(r).T for r in rank_layers if r]  # [2, k]: (above floor, numerical)
    conditions = [*_floor_conditions(signal, t.floor_factor),
                  condition("RL updated share of LLM parameters", overall["rl"], rl_interval,
                            t.max_updated_fraction, "below"),
                  condition("IN − RL updated share", difference, diff_interval, t.min_sparser_than_in, "above"),
                  requirement("share of LLM matrices RL updates", touched, ">=", t.min_matrix_share)]
    metrics = {"rl_updated_fraction": overall["rl"], "in_updated_fraction": overall["in"], **signal,
               "rl_matrix_share_updated": touched,
               "in_matrix_share_updated": sum(m.stats.updated > 0 for m in deltas.select("in")) / len(deltas.select("in"))}
    for stage in ("rl", "in"):
        metrics[f"{stage}_updated_fraction_by_region"] = {
            region: _fraction([shares[stage][i] for i in rng_ if i in used]) for region, rng_ in regions.ranges.items()}
        metrics[f"{stage}_updated_fraction_per_layer"] = [
            _fraction([shares[stage][i]]) if i in used else None for i in range(layers)]
        metrics[f"{stage}_vision_updated_fraction"] = _fraction(
            [np.array([[m.stats.updated for m in deltas.matrices if m.stage == stage and m.component != "llm"],
                       [m.numel for m in deltas.matrices if m.stage == stage and m.component != "llm"]], dtype=float)])
    rank_note = ""
    if rank_clusters:
        readings = np.concatenate(rank_clusters, axis=1)  # [2, matrices]: (above floor, numerical)
        low, high = _cluster_intervals(rank_clusters, np.median, level, n)
        rank_interval = Interval(low.low, high.high, level)
        rank = float(np.median(readings[0]))
        conditions.append(condition("median RL rank ratio (rank above the floor / min(m, n))", rank, rank_interval,
                                    t.min_rank_ratio, "above"))
        metrics["rl_rank_ratio_median"] = rank
        metrics["rl_rank_ratio_numerical_median"] = float(np.median(readings[1]))
        in_ranks = [r for m in deltas.select("in") if (r := rank_readings(m.stats, t.floor_factor)) is not None]
        metrics["in_rank_ratio_median"] = float(np.median([r[0] for r in in_ranks])) if in_ranks else None
        rank_note = (f"; median RL rank ratio {rank:.2f} ({level:.0%} CI [{rank_interval.low:.2f}, "
                     f"{rank_interval.high:.2f}], > {t.min_rank_ratio:g} is nearly full-rank)")
    else:
        rank_note = "; no spectrum, so no rank ratio"
    holds = [c.holds for c in conditions]
    verdict = ("not_reproduced" if False in holds else
               "reproduced" if all(h is True for h in holds) and rank_clusters else "inconclusive")
    by_region = ", ".join(f"{r} {metrics['rl_updated_fraction_by_region'][r]:.1%}" for r in REGION_NAMES)
    reason = (f"RL updates {overall['rl']:.1%} of the LLM parameters ({level:.0%} CI [{rl_interval.low:.1%}, "
              f"{rl_interval.high:.1%}]; {by_region}) against IN's {overall['in']:.1%}; threshold "
              f"{t.max_updated_fraction:.0%}; {touched:.0%} of its matrices touched{rank_note}")
    return Outcome(verdict, reason, overall["rl"], rl_interval, t.max_updated_fraction, metrics,
                   series="rl_updated_fraction_per_layer", conditions=tuple(conditions))


def _fraction(clusters: list[np.ndarray]) -> float | None:
    """Σ updated / Σ elements over ``clusters`` (None when they hold no element)."""
    total = sum(float(c[1].sum()) for c in clusters if c.size)
    return sum(float(c[0].sum()) for c in clusters if c.size) / total if total > 0 else None

