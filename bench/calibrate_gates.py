"""Gate calibration of the inference claims (issue 15 part 5): how often each verdict rule says
`reproduced` when the effect is absent (a null), and `not_reproduced` when the effect it describes
is present at the size it targets (a planted positive), at the shipped probe sizes.

The data are simulated item by item with known truth (models that answer right at given rates,
attention masses, skip/swap curves, KL drifts), then judged by the shipped rules with the shipped
thresholds. A claim can gate when both wrong-verdict rates are at most 1 − confidence within
Monte-Carlo error. What this does not cover: measurement error of real models beyond item noise.

    python bench/calibrate_gates.py [--trials 200] [--write]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import load_average, machine, publish, rate  # noqa: E402

from vlmdiag.claims import all_claims, load_thresholds  # noqa: E402
from vlmdiag.measure.abilities import score_mrea, score_mv2r, score_mvis  # noqa: E402
from vlmdiag.measure.kl import ForwardKL, KLDrift  # noqa: E402
from vlmdiag.measure.skip import SkipResult  # noqa: E402
from vlmdiag.measure.tables import AbilityTable, AttentionComparison  # noqa: E402
from vlmdiag.regions import regions_for  # noqa: E402

LAYERS = 12  # 4 per region
SPLICES = ("IN:RL:RL", "IN:IN:RL", "RL:RL:IN", "RL:IN:IN", "IN:RL:IN", "RL:IN:RL")


class Items:
    """Paired binary outcomes on n items: each model reads one latent uniform per item and metric,
    redrawn with probability ``redraw`` (checkpoints of one run are correlated); an item is right
    when its uniform is below the model's rate."""

    def __init__(self, n: int, rng, redraw: float = 0.3):
        self.n, self.rng, self.redraw = n, rng, redraw
        self.latent = {m: rng.random(n) for m in ("Mvis", "Mv2r", "Mrea")}

    def model(self, vis: float, v2r: float, rea: float) -> dict:
        hits = {}
        for m, accuracy in zip(self.latent, (vis, v2r, rea)):
            fresh = self.rng.random(self.n) < self.redraw
            hits[m] = np.where(fresh, self.rng.random(self.n), self.latent[m]) < accuracy
        ids = lambda p: [f"{p}{i}" for i in range(self.n)]  # noqa: E731
        return {"Mvis": score_mvis(ids("v"), list(hits["Mvis"]), [False] * self.n),
                "Mv2r": score_mv2r(ids("r"), list(hits["Mv2r"]), [True] * self.n),
                "Mrea": score_mrea(ids("t"), list(hits["Mrea"]))}


def abilities(n, rng, effect):
    items = Items(n, rng)
    rl = (0.5, 0.6, 0.6) if effect else (0.5, 0.3, 0.3)  # planted: RL gains on Mv2r/Mrea, not Mvis
    return AbilityTable({"Base": items.model(0.5, 0.2, 0.2), "IN": items.model(0.5, 0.3, 0.3),
                         "RL": items.model(*rl)})


def transplant(n, rng, effect):
    items = Items(n, rng)
    rl = (0.5, 0.65, 0.65) if effect else (0.5, 0.3, 0.3)
    scores = {"IN": items.model(0.5, 0.3, 0.3), **{s: items.model(0.5, 0.3, 0.3) for s in SPLICES},
              "RL": items.model(*rl)}
    scores["IN:RL:RL"] = items.model(*rl)  # keeps all of RL's gain (none under the null)
    return AbilityTable(scores)


def freezing(n, rng, effect):
    items = Items(n, rng)  # the null: RL gains, and the frozen run keeps all of it
    return AbilityTable({"IN": items.model(0.5, 0.3, 0.3), "RL": items.model(0.5, 0.65, 0.65),
                         "RL-frozen-Late": items.model(*((0.5, 0.3, 0.3) if effect else (0.5, 0.65, 0.65)))})


def attention(n, rng, effect):
    increase = np.array([0.0] * 4 + [0.02] * 8) if effect else np.zeros(LAYERS)
    base = 0.05 + rng.normal(0, 0.01, (n, LAYERS))
    rl = base + increase + rng.normal(0, 0.01, (n, LAYERS))
    mass = {mode: {"IN": base, "RL": rl} for mode in ("teacher_forced", "own")}
    return AttentionComparison(tuple(f"i{i}" for i in range(n)), mass, mass, ("RL",) * n)


def reasoning_late(n, rng, effect):
    breaks = [0.05] * 8 + [0.5] * 4 if effect else [0.2] * LAYERS
    right = rng.random(n) < 0.8
    rows = [right] + [right & (rng.random(n) >= p) for p in breaks]
    return SkipResult(np.arange(-1, LAYERS), np.array(rows), (), tuple(f"i{i}" for i in range(n)))


def vision_early(n, rng, effect):
    rates = [0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.1, 0.05, 0.05, 0.05, 0.05] if effect else [0.4] * LAYERS
    out = []
    for task in ("ocr", "counting", "grounding", "recognition"):
        for _ in range(n):
            u = rng.random()
            out.append(SimpleNamespace(task=task, changed=np.array([u < p for p in rates] + [False]),
                                       run=SimpleNamespace(layers=np.arange(LAYERS + 1), mode="from")))
    return out


def kl(n, rng, effect):
    ids = tuple(f"i{i}" for i in range(n))
    drift = lambda mean: ForwardKL(rng.gamma(4.0, mean / 4.0, n), np.full(n, 5), ids)  # noqa: E731
    return KLDrift(in_rl=drift(0.1 if effect else 0.4), base_in=drift(0.4))  # planted: RL drifts 4x less


SIMULATIONS = {  # claim -> (simulator, what the null is, what the planted positive is)
    "abilities.no_uniform_vision_gain": (abilities, "RL = IN's rates", "RL +0.30 on Mv2r/Mrea, Mvis flat"),
    "transplant.mid_late_carries_gain": (transplant, "RL = IN's rates", "RL +0.35, IN:RL:RL keeps all"),
    "freezing.late_necessary": (freezing, "frozen run keeps all of RL's +0.35",
                                "frozen run keeps none of it"),
    "attention.r2v_shift_mid_late": (attention, "no increase", "+0.02 mass over Mid–Late (SD 0.01 per layer)"),
    "localization.reasoning_late": (reasoning_late, "every skip breaks 20 %", "Late skips break 50 %, others 5 %"),
    "localization.vision_early": (vision_early, "every layer changes 40 %", "change rate falls 0.8 → 0.05"),
    "behaviour.rl_kl_small": (kl, "KL(IN‖RL) = KL(Base‖IN)", "KL(IN‖RL) a quarter of KL(Base‖IN)"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--resamples", type=int, default=500, help="bootstrap resamples per verdict")
    parser.add_argument("--write", action="store_true", help="write the section into bench/RESULTS.md")
    args = parser.parse_args()
    thresholds = load_thresholds(Path(__file__).resolve().parents[1] / "thresholds.yaml")
    claims, regions = all_claims(), regions_for("paper", LAYERS)
    rows = []
    for claim_id, (simulate, null, positive) in SIMULATIONS.items():
        t = thresholds.get(claim_id).model_copy(update={"bootstrap_resamples": args.resamples})
        counts = {}
        for effect in (False, True):
            rng = np.random.default_rng(1 + effect)
            verdicts = [claims[claim_id].judge(simulate(t.n_items, rng, effect), regions, t).verdict
                        for _ in range(args.trials)]
            counts[effect] = {v: verdicts.count(v) for v in ("reproduced", "not_reproduced", "inconclusive")}
        alpha = 1 - t.confidence
        wrong_yes, wrong_no = counts[False]["reproduced"], counts[True]["not_reproduced"]
        can_gate = all(c / args.trials <= alpha + 1.96 * math.sqrt(alpha * (1 - alpha) / args.trials)
                       for c in (wrong_yes, wrong_no))
        rows.append(f"| `{claim_id}` | {t.n_items} | {null} | {rate(wrong_yes, args.trials)} | {positive} | "
                    f"{rate(counts[True]['reproduced'], args.trials)} | {rate(wrong_no, args.trials)} | "
                    f"{'yes' if can_gate else 'no'} | {'true' if t.gate else 'false'} |")
        print(rows[-1], flush=True)
    text = "\n".join([
        "## Gate calibration (calibrate_gates.py)", "",
        f"`python bench/calibrate_gates.py --trials {args.trials} --resamples {args.resamples}` ({machine()}; load "
        f"{load_average()}). Each inference rule, with the shipped thresholds and probe sizes (`n_items`; swap: "
        f"pairs per task), judges {args.trials} simulated measurements with the effect absent (null) and "
        f"{args.trials} with it planted at the size named; 12 layers, `paper` regions. Rates with 95 % "
        "Monte-Carlo half-widths. A claim *may gate* when both wrong-verdict rates are at most 1 − confidence "
        "(0.05) within that error. Simulated item noise only: a real model's measurement adds its own.", "",
        "| claim | N | null | wrong `reproduced` | planted | `reproduced` (power) | wrong `not_reproduced` | may gate | gate |",
        "|---|---|---|---|---|---|---|---|---|", *rows, ""])
    publish("## Gate calibration (calibrate_gates.py)", text, args.write)


if __name__ == "__main__":
    main()
