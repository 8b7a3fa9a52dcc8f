"""The weight verdict rules on hand-made measurements: every matrix counts, messages say what is
missing, values within the storage-precision floor never decide a verdict."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmdiag.claims import all_claims, load_thresholds
from vlmdiag.measure.weights import DeltaStats, MatrixDelta, WeightDeltas, delta_stats
from vlmdiag.regions import regions_for

LAYERS = 6


@pytest.fixture(scope="module")
def thresholds(pytestconfig):
    return load_thresholds(pytestconfig.rootpath / "thresholds.yaml")


def judge(claim, deltas, thresholds, **overrides):
    t = thresholds.get(claim).model_copy(update=overrides)
    return all_claims()[claim].judge(deltas, regions_for("paper", deltas.num_llm_layers), t)


def norms_only(log10_ratios_per_layer, *, floors=(0.0, 0.0)) -> WeightDeltas:
    """LLM matrices with ‖ΔIN‖_F = 1 and ‖ΔRL‖_F = 10^ratio (None: RL left that matrix unchanged),
    each with the given (RL, IN) floors."""
    matrices = []
    for layer, ratios in enumerate(log10_ratios_per_layer):
        for j, ratio in enumerate(ratios):
            name = f"model.language_model.layers.{layer}.mlp.m{j}.weight"
            for stage, frob, floor in (("rl", 0.0 if ratio is None else 10.0 ** ratio, floors[0]), ("in", 1.0, floors[1])):
                matrices.append(MatrixDelta(name, stage, "llm", layer, layer + 1, 4096, DeltaStats(frob, frob, floor)))
    return WeightDeltas(len(log10_ratios_per_layer), 0, matrices, False)


def test_a_sparse_layer_does_not_truncate_the_median(thresholds):
    """Issue 18: one layer with a single RL-updated matrix made the old rule keep only each layer's
    first matrix. Here every layer's first matrix has RL ≈ IN and the other six RL ≈ IN/100: the
    median over all 37 matrices is 10^-2 (the old rule said 10^0, not_reproduced)."""
    rng = np.random.default_rng(0)
    layers = [[0.0] + list(-2 + 0.1 * rng.standard_normal(6)) for _ in range(LAYERS - 1)]
    layers.append([-2.0] + [None] * 6)
    outcome = judge("updates.rl_smaller_than_in", norms_only(layers), thresholds)
    assert outcome.statistic == pytest.approx(-2, abs=0.1)
    assert outcome.metrics["matrices"] == 5 * 7 + 1
    assert outcome.verdict == "reproduced"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(-4, 1, allow_nan=False), min_size=0, max_size=7), min_size=LAYERS,
                max_size=LAYERS).filter(lambda layers: any(layers)))
def test_the_statistic_is_the_median_over_every_updated_matrix(thresholds, layers):
    """For any per-layer count of updated matrices, the statistic is the median of all of them and
    lies inside its interval."""
    outcome = judge("updates.rl_smaller_than_in", norms_only(layers), thresholds, bootstrap_resamples=200)
    every = [r for layer in layers for r in layer]
    assert outcome.statistic == pytest.approx(float(np.median(every)), abs=1e-9)
    assert outcome.interval.low - 1e-9 <= outcome.statistic <= outcome.interval.high + 1e-9


def test_equal_size_layers_give_the_interval_of_the_plain_bootstrap(thresholds):
    """Layers of equal size: the cluster bootstrap draws what bootstrap_interval drew over rows
    (the verdicts of checkpoints that update every matrix do not change)."""
    from vlmdiag.stats import bootstrap_interval

    rng = np.random.default_rng(1)
    layers = (-1.5 + 0.5 * rng.standard_normal((LAYERS, 7))).tolist()
    outcome = judge("updates.rl_smaller_than_in", norms_only(layers), thresholds)
    old = bootstrap_interval(np.array(layers), np.median, level=0.95, n_resamples=2000)
    assert (outcome.interval.low, outcome.interval.high) == pytest.approx((old.low, old.high), abs=1e-12)


def test_rl_norms_within_the_floor_widen_the_interval_to_zero(thresholds):
    """Most RL updates within their floor: the median is only known to be below the floor's
    reading, so it can show RL is smaller but can never show it is not."""
    layers = [[-0.5] * 2 + [-3.0] * 5 for _ in range(LAYERS)]  # 10^-3 RL sits under a floor of 10^-2.5
    clear = judge("updates.rl_smaller_than_in", norms_only(layers), thresholds)
    assert clear.verdict == "reproduced" and clear.metrics["rl_within_floor"] == 0
    floored = judge("updates.rl_smaller_than_in", norms_only(layers, floors=(10 ** -2.5 / 2, 0.0)), thresholds)
    assert floored.metrics["rl_within_floor"] == 5 * LAYERS and floored.interval.low < -6
    assert floored.verdict == "reproduced"  # the floor reading, 10^-2.5, is already below 10^-1
    strict = judge("updates.rl_smaller_than_in", norms_only(layers, floors=(10 ** -2.5 / 2, 0.0)), thresholds,
                   max_log10_ratio=-2.5)
    assert strict.verdict == "inconclusive"  # the true RL norms could lie anywhere under the floor


def spectrum(rank: int | None, scale: float, seed: int, *, floor: float = 0.0) -> DeltaStats:
    """Stats of a 64×64 update: rank ``rank`` (None: full) of Frobenius ≈ ``scale``·64."""
    g = torch.Generator().manual_seed(seed)
    if rank is None:
        delta = torch.randn(64, 64, generator=g)
    else:
        delta = torch.randn(64, rank, generator=g) @ torch.randn(rank, 64, generator=g) / rank ** 0.5
    return delta_stats(scale * delta, torch.ones(64, 64), spectra=True, floor_energy=floor ** 2)


def with_spectra(rl_by_layer, in_by_layer) -> WeightDeltas:
    matrices = []
    for layer, (rl, inn) in enumerate(zip(rl_by_layer, in_by_layer)):
        for j in range(2):
            name = f"model.language_model.layers.{layer}.self_attn.m{j}.weight"
            matrices += [MatrixDelta(name, "rl", "llm", layer, layer + 1, 4096, rl(layer, j)),
                         MatrixDelta(name, "in", "llm", layer, layer + 1, 4096, inn(layer, j))]
    return WeightDeltas(len(rl_by_layer), 0, matrices, True)


def full_rank_in(layer, j):
    return spectrum(None, 1e-2, 100 + 2 * layer + j)


def test_no_update_in_mid_late_is_said_so(thresholds):
    """Issue 18: RL changed only Early layers; the rule says there is no RL update in Mid–Late
    (the old rule said no Mid–Late matrix had rank ≥ 10)."""
    early_only = [(lambda layer, j: spectrum(None, 1e-4, layer)) if layer < 2
                  else (lambda layer, j: DeltaStats(0.0, 0.0)) for layer in range(LAYERS)]
    outcome = judge("updates.rl_steeper_mid_late", with_spectra(early_only, [full_rank_in] * LAYERS), thresholds)
    assert outcome.verdict == "inconclusive"
    assert outcome.reason.startswith("RL has no update at all in Mid–Late")


def test_a_low_rank_update_above_its_floor_is_steeper_and_one_under_it_is_not_an_update(thresholds):
    low_rank = lambda layer, j: spectrum(2, 1e-3, layer * 2 + j, floor=1e-3 * 64 / 20)  # noqa: E731
    outcome = judge("updates.rl_steeper_mid_late", with_spectra([low_rank] * LAYERS, [full_rank_in] * LAYERS),
                    thresholds)
    assert outcome.verdict == "reproduced" and "within the storage-precision floor" in outcome.reason
    buried = lambda layer, j: spectrum(2, 1e-3, layer * 2 + j, floor=1e-3 * 64)  # noqa: E731
    outcome = judge("updates.rl_steeper_mid_late", with_spectra([buried] * LAYERS, [full_rank_in] * LAYERS),
                    thresholds)
    assert outcome.verdict == "inconclusive" and "within the storage-precision floor" in outcome.reason


def test_in_sigma_k_within_its_floor_cannot_make_rl_look_steeper(thresholds):
    """IN's σ_10…σ_40 under IN's floor: read at the floor IN looks flat and RL (full rank) steeper,
    but IN may be steeper still, so the rule does not say reproduced."""
    in_floored = lambda layer, j: spectrum(2, 1e-2, 50 + layer * 2 + j, floor=1e-2 * 64 / 30)  # noqa: E731
    rl_full = lambda layer, j: spectrum(None, 1e-4, layer * 2 + j)  # noqa: E731
    outcome = judge("updates.rl_steeper_mid_late", with_spectra([rl_full] * LAYERS, [in_floored] * LAYERS),
                    thresholds)
    assert outcome.verdict != "reproduced"
