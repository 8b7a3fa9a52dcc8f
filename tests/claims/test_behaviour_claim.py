"""behaviour.rl_kl_small (RL's Razor): the forward-KL measurement on tiny models, the verdict rule on
planted drifts whose truth is known by construction, and end to end."""

from __future__ import annotations

import numpy as np
import pytest
from claim_helpers import run, small

from vlmdiag.claims import all_claims
from vlmdiag.measure.kl import ForwardKL, KLDrift
from vlmdiag.regions import regions_for

CLAIM = "behaviour.rl_kl_small"


def drift(in_rl, base_in) -> KLDrift:
    ids = tuple(f"i{k}" for k in range(len(in_rl)))
    as_kl = lambda v: ForwardKL(np.asarray(v, dtype=float), np.full(len(v), 5), ids)  # noqa: E731
    return KLDrift(in_rl=as_kl(in_rl), base_in=as_kl(base_in))


def judge(m, shipped, **overrides):
    return all_claims()[CLAIM].judge(m, regions_for("paper", 6), shipped.get(CLAIM).model_copy(update=overrides))


def noisy(mean: float, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).gamma(4.0, mean / 4.0, n)  # positive, sd = mean / 2


def test_null_pair_rl_equal_to_in_is_inconclusive(shipped):
    out = judge(drift(np.zeros(24), noisy(0.3, 24, 0)), shipped)
    assert out.verdict == "inconclusive" and "KL(IN‖RL) not resolved above" in out.reason
    assert out.conditions[0].holds is False and out.conditions[1].holds is True


def test_an_sft_stage_that_moved_nothing_gives_no_ratio(shipped):
    out = judge(drift(noisy(0.01, 24, 1), np.zeros(24)), shipped)
    assert out.verdict == "inconclusive" and "KL(Base‖IN) not resolved" in out.reason


def test_planted_small_rl_drift_is_found(shipped):
    out = judge(drift(noisy(0.02, 24, 2), noisy(0.4, 24, 3)), shipped)
    assert out.verdict == "reproduced"
    assert out.statistic == pytest.approx(out.metrics["kl_in_rl"] / out.metrics["kl_base_in"])
    assert out.interval.high < 1.0


def test_planted_large_rl_drift_is_not_the_claim(shipped):
    out = judge(drift(noisy(0.8, 24, 4), noisy(0.1, 24, 5)), shipped)
    assert out.verdict == "not_reproduced" and out.interval.low >= 1.0


def test_equal_drifts_are_inconclusive_with_an_n(shipped):
    out = judge(drift(noisy(0.2, 24, 6), noisy(0.2, 24, 7)), shipped)
    assert out.verdict == "inconclusive" and "n_to_decide" in out.metrics


def test_equal_drifts_rarely_reproduce(shipped):
    """Null of the ratio (both stages drift alike): the rate of a wrong ``reproduced`` stays near
    1 − confidence (one-sided, so about half of it)."""
    wrong = sum(judge(drift(noisy(0.2, 24, 100 + s), noisy(0.2, 24, 200 + s)), shipped,
                      bootstrap_resamples=300).verdict == "reproduced" for s in range(60))
    assert wrong <= 6


def test_forward_kl_of_a_model_from_itself_is_zero_and_from_another_is_positive(runnable):
    from vlmdiag.measure.kl import forward_kl
    from vlmdiag.organism.tasks import ability_items
    from vlmdiag.runtime.generate import image_prompt
    from vlmdiag.runtime.model import load_model

    items = ability_items("math_vqa", 2, seed=0)
    prompts = [image_prompt(it.question, it.image) for it in items]
    base, rl = load_model(runnable["base"]), load_model(runnable["rl"])
    same = forward_kl(base, base, prompts, [it.id for it in items], max_new_tokens=3)
    other = forward_kl(base, rl, prompts, [it.id for it in items], max_new_tokens=3)
    assert np.allclose(same.kl, 0.0, atol=1e-9)
    assert (other.kl > 1e-3).all() and (other.n_tokens >= 1).all() and (other.n_tokens <= 4).all()


def test_end_to_end_on_tiny_models_with_origin(runnable, shipped):
    result = run(CLAIM, runnable, small(shipped, CLAIM, max_new_tokens=3), origin=True)
    assert result.verdict not in ("error", "skipped"), result.reason + result.metrics.get("traceback", "")
    assert len(result.metrics["per_item_kl_in_rl"]) == 2 and result.metrics["unit"] == "nats per token"


def test_without_origin_it_is_skipped_with_the_reason(runnable, shipped):
    result = run(CLAIM, runnable, small(shipped, CLAIM))
    assert result.verdict == "skipped" and "--origin" in result.reason
