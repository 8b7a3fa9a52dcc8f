"""Whether RL's end-to-end gain is uniformly better vision (paper §2.2, Table 1, Fig. 2)."""

from __future__ import annotations

from pydantic import Field

from vlmdiag.claims.rules import (comparison_condition, comparison_text, comparisons_dict, decide_text)
from vlmdiag.claims.registry import Outcome, ProbeThresholds, claim
from vlmdiag.measure.tables import AbilityTable
from vlmdiag.regions import Regions
from vlmdiag.stats import n_to_decide

METRICS = ("Mvis", "Mv2r", "Mrea")


class NoUniformVisionGainThresholds(ProbeThresholds):
    min_vision_gain: float = Field(
        description="an RL − IN Mvis gain (fraction of items) whose interval lies entirely above this "
                    "counts as a clear vision gain")


@claim("abilities.no_uniform_vision_gain",
       statement="End-to-end gains do not come from uniformly better vision; fine-grained abilities "
                 "are not monotone across Base→IN→RL",
       source="§2.2, Table 1, Fig. 2", measurement="abilities", needs=("probes", "inference"),
       thresholds=NoUniformVisionGainThresholds)
def no_uniform_vision_gain(table: AbilityTable, regions: Regions, t: NoUniformVisionGainThresholds) -> Outcome:
    """Mvis, Mv2r, Mrea (Eqs. 4–6) of each stage on the same items: Base (``--origin``, when
    given), IN (``--base``), RL (``--rl``). Every step is a paired comparison (bootstrap interval
    over items of the per-item indicator difference, exact McNemar p on the discordant items).

    Two pieces of evidence, each true, false or unknown:

    * **no vision gain**: the RL − IN Mvis interval lies entirely below ``min_vision_gain``
      while RL has a gain to explain (an RL − IN Mv2r or Mrea interval entirely above 0) (true),
      the Mvis interval lies entirely above ``min_vision_gain`` (false: RL's vision clearly
      improved), else unknown;
    * **non-monotone** (only with Base): some metric *declines* at some step, i.e. a Base→IN or
      IN→RL interval lies entirely below 0 (true); every metric's every step lies entirely above
      0 (false: a uniform, monotone improvement); else unknown.

    Both are about RL's end-to-end gain, so neither counts unless RL has one: some ability's
    RL − IN interval lies entirely above 0 (an RL that changed nothing has no gain to come from
    anywhere; a Base→IN decline alone says nothing about RL). Without it the claim is
    inconclusive. Otherwise reproduced when either piece is true; not_reproduced when no vision
    gain is false and non-monotone is false or not checkable (no ``--origin``); inconclusive
    otherwise. The statistic is the RL − IN Mvis change with its interval, against
    ``min_vision_gain``. An inconclusive verdict reports ``n_to_decide``: the items that would
    resolve RL's gain, or else the statistic or a decline, at the observed effects.
    """
    level, n = t.confidence, t.bootstrap_resamples
    if table.compare("IN", "RL", "Mvis", level=level, n_resamples=n) is None:
        raise ValueError("abilities: Mvis could not be scored for IN and RL "
                         f"({table.scores.get('IN', {}).get('Mvis')}); no general VQA items?")
    vision = table.compare("IN", "RL", "Mvis", level=level, n_resamples=n, threshold=t.min_vision_gain)
    no_gain = (True if vision.interval.high < t.min_vision_gain else
               False if vision.interval.low > t.min_vision_gain else None)
    reasoning = [c for m in ("Mv2r", "Mrea") if (c := table.compare("IN", "RL", m, level=level, n_resamples=n))]
    has_gain = any(c.interval.low > 0 for c in reasoning)
    if no_gain and not has_gain:
        no_gain = None  # no end-to-end gain to explain: "not from vision" says nothing
    steps = [("Base", "IN"), ("IN", "RL")] if "Base" in table.scores else [("IN", "RL")]
    comparisons = {f"{m} {b} − {a}": table.compare(a, b, m, level=level, n_resamples=n)
                   for a, b in steps for m in METRICS}
    usable = [c for c in comparisons.values() if c is not None]
    declines = [c for c in usable if c.interval.high < 0]
    non_monotone = None
    if "Base" in table.scores:
        non_monotone = True if declines else False if usable and all(c.interval.low > 0 for c in usable) else None
    rl_steps = {m: comparisons[f"{m} RL − IN"] for m in METRICS}
    rl_gain = [m for m, c in rl_steps.items() if c is not None and c.interval.low > 0]
    if not rl_gain:
        verdict = "inconclusive"  # no gain whose source could be located, whatever else holds
    elif no_gain or non_monotone:
        verdict = "reproduced"
    elif no_gain is False and not non_monotone:
        verdict = "not_reproduced" if non_monotone is False or "Base" not in table.scores else "inconclusive"
    else:
        verdict = "inconclusive"
    parts = [f"vision: {comparison_text(vision)} vs gain threshold {t.min_vision_gain:g} ("
             + {True: "no clear vision gain", False: "a clear vision gain",
                None: "unresolved" if has_gain else "no resolved Mv2r/Mrea gain of RL to explain"}[no_gain] + ")"]
    if "Base" in table.scores:
        parts.append("declines: " + ("; ".join(comparison_text(c) for c in declines) if declines else
                                     "none resolved" + (" (every step improves every ability)" if non_monotone is False else "")))
    n_decide = None
    if verdict == "inconclusive":
        if not rl_gain:
            found = [x for c in rl_steps.values() if c is not None and c.delta > 0
                     and (x := n_to_decide(c.n, c.delta, c.interval, 0.0)) is not None]
            n_decide = min(found) if found else None
            parts.insert(0, "RL has no resolved gain over IN on " + "/".join(METRICS) + ", so there is no "
                         "end-to-end gain whose source could be located; "
                         + decide_text(n_decide, "resolve RL's gain"))
        else:
            # the statistic resolving, or (with Base) a decline resolving, whichever comes first
            found = [vision.n_needed] + [n_to_decide(c.n, c.delta, c.interval, 0.0) for c in usable
                                         if "Base" in table.scores and c.delta < 0]
            found = [x for x in found if x is not None]
            n_decide = min(found) if found else None
            parts.append(decide_text(n_decide))
    parts += [*table.notes, *table.truncation_notes()]
    metrics = {"scores": table.table(), "transitions": table.transitions(), "truncated": table.truncated(),
               "comparisons": comparisons_dict(comparisons), "no_vision_gain": no_gain,
               "non_monotone": non_monotone, "rl_has_reasoning_gain": has_gain, "stages": list(table.scores),
               "n_needed": vision.n_needed, "rl_gains": rl_gain, "n_to_decide": n_decide}
    # What the rule read: no clear vision gain, RL's gain over IN (any ability), any resolved decline.
    conditions = (comparison_condition(vision, t.min_vision_gain, "below"),
                  *(comparison_condition(c, 0.0, "above") for c in rl_steps.values() if c is not None),
                  *(comparison_condition(c, 0.0, "below") for c in usable if "Base" in table.scores))
    return Outcome(verdict, "; ".join(parts), vision.delta, vision.interval, t.min_vision_gain, metrics,
                   conditions=conditions)
