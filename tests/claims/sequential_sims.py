"""Simulated per-item measurements for the sequential design's tests (and
``bench/calibrate_sequential.py``): each simulator draws the data of ``n_max`` items once, with the
truth known by construction, and returns ``at(n)``, the measurement a run would make on the first
``n`` items (per probe set), as the claim's verdict rule reads it. Pure numpy; no model runs.

Simulators (``effect``: ``null`` = the effect sits exactly on the claim's threshold, so the rule
must not say ``reproduced`` more often than 1 − confidence; ``planted`` = the effect the claim
describes at the size named; ``copy`` = RL is an exact copy of IN):

* ``reasoning_late`` (paired difference, skip): per item, Late − Early error increase.
* ``attention`` (paired difference, continuous): per item, RL − IN R→V mass over Mid–Late.
* ``vision_early`` (proportion, swap): per pair, change rate Early–Mid − Late.
* ``transplant`` (kept share): per item and model, right/wrong on Mv2r/Mrea.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import numpy as np

from vlmdiag.measure.abilities import score_mrea, score_mv2r, score_mvis
from vlmdiag.measure.skip import SkipResult
from vlmdiag.measure.tables import AbilityTable, AttentionComparison
from vlmdiag.regions import regions_for

LAYERS = 12  # 4 per region (paper regions of 12 layers)
REGIONS = regions_for("paper", LAYERS)
TASKS = ("ocr", "counting", "grounding", "recognition")


def reasoning_late(n_max: int, rng, effect: str) -> Callable[[int], SkipResult]:
    """The base model is right on 80 % of items; skipping a layer breaks a right item with a
    per-layer probability. null: 20 % at every layer (Late − Early = 0, the threshold);
    planted: Late 15 %, Early/Mid 5 % (Late − Early = +0.08)."""
    breaks = {"null": [0.2] * LAYERS, "planted": [0.05] * 8 + [0.15] * 4}[effect]
    right = rng.random(n_max) < 0.8
    rows = np.array([right] + [right & (rng.random(n_max) >= p) for p in breaks])
    ids = tuple(f"i{i}" for i in range(n_max))
    return lambda n: SkipResult(np.arange(-1, LAYERS), rows[:, :n], (), ids[:n])


def attention(n_max: int, rng, effect: str) -> Callable[[int], AttentionComparison]:
    """R→V mass per item and layer, IN ~ 0.05 + N(0, 0.01), RL = IN + increase + N(0, 0.01).
    null: no increase (both conditions sit on their threshold 0); planted: +0.004 over Mid–Late,
    none in Early; copy: RL = IN exactly."""
    base = 0.05 + rng.normal(0, 0.01, (n_max, LAYERS))
    if effect == "copy":
        rl = base.copy()
    else:
        increase = np.array([0.0] * 4 + [0.004 if effect == "planted" else 0.0] * 8)
        rl = base + increase + rng.normal(0, 0.01, (n_max, LAYERS))
    ids = tuple(f"i{i}" for i in range(n_max))

    def at(n):
        mass = {mode: {"IN": base[:n], "RL": rl[:n]} for mode in ("teacher_forced", "own")}
        return AttentionComparison(ids[:n], mass, mass, ("RL",) * n)

    return at


def vision_early(n_max: int, rng, effect: str):
    """Per pair one uniform u; the answer changes when swapping from layer L if u < rate[L].
    null: Early–Mid 0.5, Late 0.4 (Early–Mid − Late = 0.1, the threshold); planted: Early–Mid
    0.55, Late 0.3 (+0.25, 0.15 above the threshold)."""
    rates = {"null": [0.5] * 8 + [0.4] * 4, "planted": [0.55] * 8 + [0.3] * 4}[effect]
    pairs = {task: [SimpleNamespace(task=task, changed=np.array([u < p for p in rates] + [False]),
                                    run=SimpleNamespace(layers=np.arange(LAYERS + 1), mode="from"))
                    for u in rng.random(n_max)] for task in TASKS}
    return lambda n: [pair for task in TASKS for pair in pairs[task][:n]]  # n pairs per task, as measured


class Items:
    """Paired right/wrong answers of several models on ``n_max`` items: each model reads one
    latent uniform per item and metric, redrawn with probability ``redraw`` (checkpoints of one
    training run are correlated); an item is right when its uniform is below the model's rate."""

    def __init__(self, n_max: int, rng, redraw: float = 0.3):
        self.n_max, self.rng, self.redraw = n_max, rng, redraw
        self.latent = {m: rng.random(n_max) for m in ("Mvis", "Mv2r", "Mrea")}

    def model(self, rates: tuple[float, float, float]) -> dict[str, np.ndarray]:
        hits = {}
        for m, rate in zip(self.latent, rates):
            fresh = self.rng.random(self.n_max) < self.redraw
            hits[m] = np.where(fresh, self.rng.random(self.n_max), self.latent[m]) < rate
        return hits


def ability_table(models: dict[str, dict[str, np.ndarray]], n: int) -> AbilityTable:
    """The :class:`AbilityTable` of ``models`` (label → metric → per-item hits) on the first n items."""
    ids = lambda p: [f"{p}{i}" for i in range(n)]  # noqa: E731
    return AbilityTable({label: {"Mvis": score_mvis(ids("v"), list(h["Mvis"][:n]), [False] * n),
                                 "Mv2r": score_mv2r(ids("r"), list(h["Mv2r"][:n]), [True] * n),
                                 "Mrea": score_mrea(ids("t"), list(h["Mrea"][:n]))}
                         for label, h in models.items()})


def transplant(n_max: int, rng, effect: str):
    """IN right at 0.3 on Mv2r/Mrea, RL at 0.65 (a +0.35 gain); IN:RL:RL keeps a share of it.
    null: half of it (0.475: the share sits on the threshold 0.5); planted: all of it;
    copy: RL and IN:RL:RL are exact copies of IN."""
    items = Items(n_max, rng)
    in_ = items.model((0.5, 0.3, 0.3))
    if effect == "copy":
        models = {"IN": in_, "IN:RL:RL": in_, "RL": in_}
    else:
        kept = {"null": 0.475, "planted": 0.65}[effect]
        models = {"IN": in_, "IN:RL:RL": items.model((0.5, kept, kept)), "RL": items.model((0.5, 0.65, 0.65))}
    return lambda n: ability_table(models, n)


SIMULATORS = {"localization.reasoning_late": reasoning_late, "attention.r2v_shift_mid_late": attention,
              "localization.vision_early": vision_early, "transplant.mid_late_carries_gain": transplant}


def run_sequential(claim_id: str, effect: str, thresholds, *, trials: int, seed: int = 0, rule=None,
                   naive: bool = False) -> dict:
    """``trials`` sequential runs of ``claim_id``'s rule on fresh simulated data, with the plan the
    shipped ``sequential`` rule gives it (:func:`vlmdiag.sequential.plan_for`) and the same loop
    as a run (:func:`vlmdiag.sequential.run_looks`). ``naive``: every look at the claim's own
    confidence (no error spending), for comparison.

    Returns ``{"reproduced": count, "not_reproduced": ..., "inconclusive": ..., "mean_n": mean N
    used, "plan": the SequentialPlan}``.
    """
    from vlmdiag.claims import all_claims
    from vlmdiag.claims.thresholds import SequentialRule
    from vlmdiag.sequential import look_thresholds, plan_for, run_looks
    from vlmdiag.stats import SequentialPlan

    claim = all_claims()[claim_id]
    plan = plan_for(claim, thresholds, rule or SequentialRule())
    if naive:
        plan = SequentialPlan(plan.looks, 1 - len(plan.looks) * (1 - thresholds.confidence))
    rng = np.random.default_rng(seed)
    counts = {"reproduced": 0, "not_reproduced": 0, "inconclusive": 0}
    used = []
    for _ in range(trials):
        at = SIMULATORS[claim_id](plan.looks[-1], rng, effect)
        outcome, taken, _ = run_looks(plan, lambda n, level: claim.judge(at(n), REGIONS,
                                                                           look_thresholds(thresholds, n, level)))
        counts[outcome.verdict] += 1
        used.append(taken[-1][0])
    return {**counts, "mean_n": float(np.mean(used)), "plan": plan}
