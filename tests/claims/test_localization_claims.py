"""localization.reasoning_late and localization.vision_early: verdict rules on planted curves,
skips on weight-only checkpoints, and end to end."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from claim_helpers import run, small

from vlmdiag.claims import all_claims
from vlmdiag.measure.skip import SkipResult
from vlmdiag.regions import regions_for
from vlmdiag.stats import wilson_interval

L, N = 6, 30
REGIONS = regions_for("paper", L)


def judge(claim_id, m, shipped):
    return all_claims()[claim_id].judge(m, REGIONS, shipped.get(claim_id))


def skip_result(break_prob_by_layer, *, baseline=0.9, seed=0) -> SkipResult:
    """Items right with probability ``baseline``; skipping layer k breaks a right item with
    probability ``break_prob_by_layer[k]``."""
    rng = np.random.default_rng(seed)
    right = rng.random(N) < baseline
    rows = [right] + [right & (rng.random(N) >= p) for p in break_prob_by_layer]
    return SkipResult(np.arange(-1, L), np.array(rows), (), tuple(f"i{i}" for i in range(N)))


def test_late_skips_that_break_reasoning_are_found(shipped):
    out = judge("localization.reasoning_late", skip_result([0, 0, 0.1, 0.1, 0.8, 0.8]), shipped)
    assert out.verdict == "reproduced" and out.interval.low > 0
    assert len(out.metrics["skip_error_rate"]) == L and out.series == "skip_error_rate"


def test_early_skips_that_break_reasoning_are_not_the_claim(shipped):
    out = judge("localization.reasoning_late", skip_result([0.8, 0.8, 0.1, 0.1, 0, 0]), shipped)
    assert out.verdict == "not_reproduced"


def test_a_model_that_cannot_solve_the_items_is_inconclusive(shipped):
    out = judge("localization.reasoning_late", skip_result([0, 0, 0, 0, 1, 1], baseline=0.0), shipped)
    assert out.verdict == "inconclusive" and "cannot cost accuracy" in out.reason


def test_two_right_items_cannot_decide_where_reasoning_acts(shipped):
    """2 of 30 right (Wilson upper bound above the floor, lower bound below): Early skips that
    break those items give an interval at or below 0, which said not_reproduced before."""
    right = np.zeros(N, bool)
    right[:2] = True
    rows = [right] + [right & (k >= 2) for k in range(L)]        # skipping Early layers breaks it
    result = SkipResult(np.arange(-1, L), np.array(rows), (), tuple(f"i{i}" for i in range(N)))
    t = shipped.get("localization.reasoning_late")
    assert wilson_interval(2, N, level=t.confidence).high >= t.min_baseline_accuracy  # the old gate let it through
    out = judge("localization.reasoning_late", result, shipped)
    assert out.verdict == "inconclusive" and "not clearly above the floor" in out.reason
    assert out.interval.high <= t.min_late_minus_early        # the interval alone would have decided
    assert [c.holds for c in out.conditions[:2]] == [True, False]


def test_the_floor_decides_once_enough_items_are_right(shipped):
    """A base model right on ~90 % of the items clears the floor: the planted Late effect decides."""
    t = shipped.get("localization.reasoning_late")
    out = judge("localization.reasoning_late", skip_result([0, 0, 0.1, 0.1, 0.8, 0.8], baseline=0.9), shipped)
    assert out.verdict == "reproduced" and out.metrics["baseline_accuracy_interval"]["low"] >= t.min_baseline_accuracy


def test_n_to_clear_floor():
    from vlmdiag.claims.localization import n_to_clear_floor

    assert n_to_clear_floor(0.1, 24, 0.2, 0.95) is None
    n = n_to_clear_floor(0.3, 24, 0.2, 0.95)
    assert wilson_interval(round(0.3 * n), n).low >= 0.2 > wilson_interval(round(0.3 * (n - 5)), n - 5).low


def swap_results(rate_by_start_layer, *, seed=0, mode="from"):
    """Pairs whose answer changes, when the swap is at layer L, with probability
    ``rate_by_start_layer[L]`` (shared uniform draw, so the curve is monotone per pair)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, task in enumerate(["ocr", "counting", "grounding", "recognition"] * (N // 4)):
        u = rng.random()
        changed = np.array([u < p for p in rate_by_start_layer] + [False])
        out.append(SimpleNamespace(task=task, changed=changed,
                                   run=SimpleNamespace(layers=np.arange(L + 1), mode=mode)))
    return out


def test_vision_read_in_early_mid_layers_is_found(shipped):
    out = judge("localization.vision_early", swap_results([0.9, 0.9, 0.8, 0.5, 0.05, 0.0]), shipped)
    assert out.verdict == "reproduced"
    assert len(out.metrics["swap_change_rate"]) == L and "swap_change_rate_ocr" in out.metrics


def test_vision_read_in_late_layers_only_is_not_the_claim(shipped):
    out = judge("localization.vision_early", swap_results([0.9] * L), shipped)
    assert out.verdict == "not_reproduced"


def test_single_layer_mode_is_a_setting_and_reported(shipped):
    t = shipped.get("localization.vision_early")
    assert t.swap_mode == "from" and t.probe_settings()["mode"] == "from"
    only = t.model_copy(update={"swap_mode": "only"})
    assert only.probe_settings()["mode"] == "only"
    # single-layer swaps that matter only in Early-Mid layers
    out = all_claims()["localization.vision_early"].judge(
        swap_results([0.0, 0.6, 0.6, 0.3, 0.0, 0.0], mode="only"), REGIONS, only)
    assert out.verdict == "reproduced" and out.metrics["swap_mode"] == "only" and "mode only" in out.reason
    # in "only" mode the rate at L = 0 is one layer's, not every layer's: no false "does not read"
    assert "does not read" not in out.reason
    with pytest.raises(ValueError, match="swap_mode is 'from'"):
        judge("localization.vision_early", swap_results([0.9] * L, mode="only"), shipped)


def test_no_single_layer_that_matters_is_inconclusive_in_only_mode(shipped):
    only = shipped.get("localization.vision_early").model_copy(update={"swap_mode": "only"})
    out = all_claims()["localization.vision_early"].judge(swap_results([0.0] * L, mode="only"), REGIONS, only)
    assert out.verdict == "inconclusive" and "any single layer" in out.reason


def test_answers_that_never_change_are_inconclusive(shipped):
    out = judge("localization.vision_early", swap_results([0.0] * L), shipped)
    assert out.verdict == "inconclusive" and "does not read" in out.reason


@pytest.mark.parametrize("claim_id", ["localization.reasoning_late", "localization.vision_early"])
def test_weight_only_checkpoints_skip_with_a_reason(claim_id, planted, shipped):
    result = run(claim_id, planted("paper"), shipped.get(claim_id))
    assert result.verdict == "skipped" and "tokenizer" in result.reason


@pytest.mark.parametrize("claim_id", ["localization.reasoning_late", "localization.vision_early"])
def test_end_to_end_on_tiny_models(claim_id, runnable, shipped):
    n = 1 if claim_id == "localization.vision_early" else 2
    result = run(claim_id, runnable, small(shipped, claim_id, n_items=n))
    assert result.verdict not in ("error", "skipped"), result.reason + result.metrics.get("traceback", "")
    assert result.metrics["robust_to_cut"] in (True, False)
