"""Helpers of the inference-claim tests: small probe settings and running one claim."""

from __future__ import annotations

from collections.abc import Sequence

from vlmdiag.organism import OrganismSuite
from vlmdiag.runner import CheckpointCache, RecipeCheckpoints as Recipe, Runner
from vlmdiag.claims import all_claims, run_claim

#: Probe settings small enough for a test: the verdict is not the point, running end to end is.
SMALL = dict(n_items=2, max_new_tokens=4, bootstrap_resamples=200)


def small(shipped, claim_id: str, **overrides):
    """The shipped thresholds of ``claim_id`` with :data:`SMALL` probe settings."""
    return shipped.get(claim_id).model_copy(update={**SMALL, **overrides})


def run(claim_id: str, paths: dict, thresholds, *, origin: bool = False, frozen=(), regions: str = "paper",
        evidence: Runner | None = None):
    """``run_claim`` of one claim on a recipe made of ``paths``."""
    recipe = Recipe("r", str(paths["base"]), str(paths["rl"]), str(paths["origin"]) if origin else None,
                    tuple((region, str(paths[key])) for region, key in frozen))
    evidence = evidence or Runner(recipe, CheckpointCache(), probes=OrganismSuite())
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


def scores_from(hits: dict[str, Sequence[bool]]) -> dict:
    """Mvis/Mv2r/Mrea scores whose per-item indicators are exactly ``hits[metric]`` (the same n
    items per metric, in order)."""
    from vlmdiag.measure.abilities import score_mrea, score_mv2r, score_mvis

    n = len(hits["Mrea"])
    ids = lambda m: [f"{m}-{i}" for i in range(n)]  # noqa: E731
    return {"Mvis": score_mvis(ids("v"), list(hits["Mvis"]), [False] * n),
            "Mv2r": score_mv2r(ids("r"), list(hits["Mv2r"]), [True] * n),
            "Mrea": score_mrea(ids("t"), list(hits["Mrea"]))}


class Items:
    """Paired binary outcomes of several models on the same n items, for planted effects whose
    truth is known by construction: every model reads one latent uniform per item and metric
    (so models are positively correlated, as checkpoints of one training run are), re-drawn with
    probability ``redraw`` for each model; an item is right when its uniform is below the
    model's rate. Models at the same rate have the same marginal accuracy: no effect."""

    def __init__(self, n: int, seed: int, redraw: float = 0.3):
        import numpy as np

        self.n, self.redraw = n, redraw
        self.rng = np.random.default_rng(seed)
        self.latent = {m: self.rng.random(n) for m in ("Mvis", "Mv2r", "Mrea")}

    def model(self, rates: dict[str, float]) -> dict:
        """Scores of one model answering right at ``rates[metric]`` (a fresh partial redraw)."""
        hits = {}
        for m, u in self.latent.items():
            fresh = self.rng.random(self.n) < self.redraw
            hits[m] = (self.rng.random(self.n) * fresh + u * ~fresh) < rates[m]
        return scores_from(hits)
