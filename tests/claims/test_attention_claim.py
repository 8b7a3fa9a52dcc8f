"""attention.r2v_shift_mid_late: the verdict rule on planted attention, and end to end."""

from __future__ import annotations

import numpy as np
from claim_helpers import run, small

from vlmdiag.claims import all_claims
from vlmdiag.measure.tables import AttentionComparison
from vlmdiag.regions import regions_for

CLAIM = "attention.r2v_shift_mid_late"
L, N = 6, 30


def planted(increase_by_layer, *, noise=0.002, seed=0, own_increase=None) -> AttentionComparison:
    """IN's mass ~ 0.05 per layer; RL = IN + ``increase_by_layer`` + item noise."""
    rng = np.random.default_rng(seed)
    base = 0.05 + rng.normal(0, noise, (N, L))
    make = lambda inc: base + np.asarray(inc) + rng.normal(0, noise, (N, L))  # noqa: E731
    mass = {"teacher_forced": {"IN": base, "RL": make(increase_by_layer)},
            "own": {"IN": base, "RL": make(own_increase if own_increase is not None else increase_by_layer)}}
    mean = {mode: {k: v / 16 for k, v in by.items()} for mode, by in mass.items()}
    return AttentionComparison(tuple(f"i{i}" for i in range(N)), mass, mean, ("RL",) * N)


def judge(m, shipped, **overrides):
    t = shipped.get(CLAIM).model_copy(update=overrides)
    return all_claims()[CLAIM].judge(m, regions_for("paper", L), t)


def test_a_mid_late_increase_is_found(shipped):
    out = judge(planted([0, 0, 0.02, 0.02, 0.03, 0.03]), shipped)
    assert out.verdict == "reproduced"
    assert out.interval.low > 0 and out.metrics["basis"] == "teacher_forced"
    assert len(out.metrics["teacher_forced_mass_increase"]) == L == len(out.metrics["own_mean_increase"])
    assert out.series == "teacher_forced_mass_increase"


def test_an_early_only_increase_is_not_the_claim(shipped):
    assert judge(planted([0.03, 0.03, 0, 0, 0, 0]), shipped).verdict == "not_reproduced"


def test_a_uniform_increase_is_not_mainly_mid_late(shipped):
    assert judge(planted([0.02] * L), shipped).verdict != "reproduced"


def test_no_change_is_not_reproduced_or_inconclusive(shipped):
    assert judge(planted([0] * L), shipped).verdict in ("not_reproduced", "inconclusive")


def test_the_basis_decides_which_mode_is_read(shipped):
    m = planted([0] * L, own_increase=[0, 0, 0.02, 0.02, 0.03, 0.03])
    assert judge(m, shipped).verdict != "reproduced"
    assert judge(m, shipped, basis="own").verdict == "reproduced"


def test_items_without_reasoning_tokens_are_left_out(shipped):
    m = planted([0, 0, 0.02, 0.02, 0.03, 0.03])
    m.mass["teacher_forced"]["RL"][:N - 1] = np.nan
    out = judge(m, shipped)
    assert out.verdict == "inconclusive" and "too few" in out.reason


def test_weight_only_checkpoints_skip_with_a_reason(planted, shipped):
    result = run(CLAIM, planted("paper"), shipped.get(CLAIM))
    assert result.verdict == "skipped" and "tokenizer" in result.reason


def test_end_to_end_on_tiny_models(runnable, shipped):
    result = run(CLAIM, runnable, small(shipped, CLAIM, n_items=2, max_new_tokens=6))
    assert result.verdict not in ("error", "skipped"), result.reason + result.metrics.get("traceback", "")
    assert len(result.metrics["own_mass_increase"]) == 6 and "basis teacher_forced" in result.reason


def test_every_condition_is_recorded_with_its_direction(shipped):
    """The case a bare "0.0025 [0.0012, 0.0038] vs 0" hid: the Mid–Late increase holds, the
    margin over Early fails; the outcome lists both, so the report can say which."""
    out = judge(planted([0.03, 0.03, 0.01, 0.01, 0.01, 0.01]), shipped)
    assert out.verdict == "not_reproduced"
    increase, margin = out.conditions
    assert (increase.op, increase.holds, margin.op, margin.holds) == (">", True, ">", False)
    assert margin.interval.high <= margin.threshold == 0.0 and margin.name == "margin over Early"


def test_per_layer_intervals_bracket_the_curves_for_the_figure(shipped):
    """Each curve the verdict reads has a per-layer bootstrap interval (over items) around it."""
    from vlmdiag.report.plots.curves import per_layer_band

    out = judge(planted([0, 0, 0.02, 0.02, 0.03, 0.03], seed=3), shipped)
    for name in ("teacher_forced_IN_mass", "teacher_forced_RL_mass", "teacher_forced_mass_increase"):
        curve, cells = out.metrics[name], out.metrics[f"{name}_interval"]
        assert len(cells) == len(curve)
        assert all(c["low"] <= v <= c["high"] for c, v in zip(cells, curve))
        lows, highs = per_layer_band(out.metrics, name, len(curve))
        assert lows == [c["low"] for c in cells] and highs == [c["high"] for c in cells]
