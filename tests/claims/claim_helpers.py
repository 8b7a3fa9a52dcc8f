"""Helpers of the inference-claim tests: small probe settings and running one claim."""

from __future__ import annotations

from vlmdiag.claims import CheckpointCache, Evidence, Recipe, all_claims, run_claim

#: Probe settings small enough for a test: the verdict is not the point, running end to end is.
SMALL = dict(n_items=2, max_new_tokens=4, bootstrap_resamples=200)


def small(shipped, claim_id: str, **overrides):
    """The shipped thresholds of ``claim_id`` with :data:`SMALL` probe settings."""
    return shipped.get(claim_id).model_copy(update={**SMALL, **overrides})


def run(claim_id: str, paths: dict, thresholds, *, origin: bool = False, frozen=(), regions: str = "paper",
        evidence: Evidence | None = None):
    """``run_claim`` of one claim on a recipe made of ``paths``."""
    recipe = Recipe("r", str(paths["base"]), str(paths["rl"]), str(paths["origin"]) if origin else None,
                    tuple((region, str(paths[key])) for region, key in frozen))
    evidence = evidence or Evidence(recipe, CheckpointCache())
    return run_claim(all_claims()[claim_id], evidence, regions, thresholds)


def scores_at(rates: dict[str, float], n: int = 100) -> dict:
    """Mvis/Mv2r/Mrea scores on ``n`` items each, right at the given rate per metric. Item i is
    counted when i < rate·n, so the items of a lower rate are a subset of a higher rate's (a
    paired difference is then exactly the rate difference)."""
    from vlmdiag.measure.abilities import score_mrea, score_mv2r, score_mvis

    ids = lambda m: [f"{m}-{i}" for i in range(n)]  # noqa: E731
    hit = lambda r: [i < round(r * n) for i in range(n)]  # noqa: E731
    return {"Mvis": score_mvis(ids("v"), hit(rates["Mvis"]), [False] * n),
            "Mv2r": score_mv2r(ids("r"), hit(rates["Mv2r"]), [True] * n),
            "Mrea": score_mrea(ids("t"), hit(rates["Mrea"]))}
