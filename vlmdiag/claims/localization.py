"""Where vision and reasoning act in the base checkpoint (paper §3.1, Fig. 4): visual-token
swapping (vision) and layer skipping (reasoning)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field

from vlmdiag.claims.rules import decide_text, layer_list, region_means
from vlmdiag.claims.registry import Outcome, ProbeThresholds, claim, condition, requirement
from vlmdiag.measure.curves import skip_correct, swap_changed
from vlmdiag.regions import Regions
from vlmdiag.stats import bootstrap_interval, decide, n_to_decide, wilson_interval


class ReasoningLateThresholds(ProbeThresholds):
    min_late_minus_early: float = Field(
        description="error-rate increase over the unskipped model (fraction of items), Late mean "
                    "minus Early mean, that the interval must exceed")
    min_baseline_accuracy: float = Field(
        ge=0, le=1, description="the unskipped base model's accuracy that skipping needs to show anything: "
                                "below it (Wilson upper bound) inconclusive, and a decided verdict needs "
                                "the Wilson lower bound above it")


@claim("localization.reasoning_late", statement="Reasoning acts in Late layers",
       source="§3.1.2, Fig. 4b", measurement="skip", needs=("probes", "inference"),
       thresholds=ReasoningLateThresholds)
def reasoning_late(m, regions: Regions, t: ReasoningLateThresholds) -> Outcome:
    """Layer skipping on the base checkpoint (``--base``), text-only math items.

    Per item and layer k, the error increase is ``correct(unskipped) − correct(skip k)`` (−1, 0
    or 1). Reproduced when the per-item Late mean minus Early mean of that increase has a
    bootstrap interval (over items) entirely above ``min_late_minus_early``; not_reproduced when
    entirely at or below; inconclusive otherwise, or when the unskipped model is right on too few
    items (Wilson upper bound < ``min_baseline_accuracy``) for a skip to cost anything. A decided
    verdict also needs the unskipped accuracy clearly above that floor (Wilson lower bound >=
    ``min_baseline_accuracy``): one or two right items make every per-item increase 0 or so, and
    an interval at or below 0 from them says nothing about where the model reasons.
    """
    if -1 not in list(m.layers):
        raise ValueError("localization.reasoning_late needs the unskipped baseline (layer -1) in the sweep")
    baseline, skipped = skip_correct(m, regions.num_layers)                    # [N], [N, L]
    increase = baseline[:, None] - skipped
    by_region = region_means(increase, regions)
    per_item = by_region["Late"] - by_region["Early"]
    statistic = float(per_item.mean())
    interval = bootstrap_interval(per_item, level=t.confidence, n_resamples=t.bootstrap_resamples)
    n = len(baseline)
    hits = int(baseline.sum())
    accuracy_interval = wilson_interval(hits, n, level=t.confidence)
    metrics = {
        "skip_error_rate": layer_list(1 - skipped.mean(axis=0)),
        "error_increase": layer_list(increase.mean(axis=0)),
        "baseline_error_rate": 1 - hits / n, "baseline_accuracy_interval": accuracy_interval.as_dict(),
        **{f"{r.lower()}_error_increase": float(v.mean()) for r, v in by_region.items()}, "n_items": n}
    conditions = (requirement("unskipped accuracy (Wilson upper bound)", accuracy_interval.high, ">=",
                              t.min_baseline_accuracy),
                  requirement("unskipped accuracy (Wilson lower bound)", accuracy_interval.low, ">=",
                              t.min_baseline_accuracy),
                  condition("error increase Late − Early", statistic, interval, t.min_late_minus_early, "above"))
    if accuracy_interval.high < t.min_baseline_accuracy or hits == 0:
        # at the observed accuracy (below the floor) more items only lower the upper bound further;
        # with no item right every increase is 0 or below and the bootstrap's [0, 0] would "decide"
        # (a wide interval, e.g. a sequential look's, lets 0/24 pass the bound)
        p = hits / n
        metrics["n_to_decide"] = None
        return Outcome("inconclusive", f"the unskipped base model answers {hits}/{n} items right (upper bound "
                       f"{accuracy_interval.high:.0%}, floor {t.min_baseline_accuracy:.0%}): skipping a layer "
                       "cannot cost accuracy it does not have, and more items would not change that "
                       f"(observed accuracy {p:.0%})", statistic, interval,
                       t.min_late_minus_early, metrics, series="skip_error_rate", conditions=conditions[:1])
    verdict = decide(interval, t.min_late_minus_early, "above")
    reason = (f"error increase when skipping a layer: Late {by_region['Late'].mean():+.2f}, Mid "
              f"{by_region['Mid'].mean():+.2f}, Early {by_region['Early'].mean():+.2f}; Late − Early = "
              f"{statistic:+.2f} ({t.confidence:.0%} CI [{interval.low:+.2f}, {interval.high:+.2f}], threshold "
              f"{t.min_late_minus_early:g}); unskipped error {1 - hits / n:.0%}, N={n}")
    if verdict != "inconclusive" and accuracy_interval.low < t.min_baseline_accuracy:
        verdict = "inconclusive"
        metrics["n_to_decide"] = n_to_clear_floor(hits / n, n, t.min_baseline_accuracy, t.confidence)
        reason += (f"; but the unskipped accuracy is not clearly above the floor {t.min_baseline_accuracy:.0%} "
                   f"(Wilson lower bound {accuracy_interval.low:.0%}): too few right items to locate reasoning; "
                   + decide_text(metrics["n_to_decide"], "clear the floor"))
    elif verdict == "inconclusive":
        metrics["n_to_decide"] = n_to_decide(n, statistic, interval, t.min_late_minus_early)
        reason += "; " + decide_text(metrics["n_to_decide"])
    return Outcome(verdict, reason, statistic, interval, t.min_late_minus_early, metrics, series="skip_error_rate",
                   conditions=conditions)


def n_to_clear_floor(accuracy: float, n: int, floor: float, level: float) -> int | None:
    """The smallest N (at most 10⁶) at which the Wilson lower bound at ``level`` of an observed
    ``accuracy`` reaches ``floor``; None when the accuracy is at or below the floor (no N does)."""
    if accuracy <= floor:
        return None
    clears = lambda N: wilson_interval(round(accuracy * N), N, level=level).low >= floor  # noqa: E731
    low, high = n, 1_000_000
    if not clears(high):
        return None
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if clears(mid) else (mid + 1, high)
    return low


class VisionEarlyThresholds(ProbeThresholds):
    swap_mode: Literal["from", "only"] = Field(
        "from", description="where the source's visual keys/values go for a swap at layer L: every "
                            "layer >= L (from: the authors' code) or layer L alone (only: the paper's text)")
    min_early_mid_minus_late: float = Field(
        description="change rate (fraction of pairs) with the swap at Early–Mid layers minus at Late "
                    "layers, that the interval must exceed")
    min_full_swap_rate: float = Field(
        ge=0, le=1, description="below this change rate the model does not read the attribute at all: "
                                "inconclusive (from: swapping every layer, L = 0; only: the largest "
                                "single-layer change rate)")

    MEASUREMENT_SETTINGS: ClassVar[dict[str, str]] = {**ProbeThresholds.MEASUREMENT_SETTINGS, "mode": "swap_mode"}


@claim("localization.vision_early",
       statement="Vision functions (recognition; OCR, counting, grounding) act in Early–Mid layers",
       source="§3.1.1, Fig. 4a", measurement="swap", needs=("probes", "inference"),
       thresholds=VisionEarlyThresholds)
def vision_early(results: Sequence, regions: Regions, t: VisionEarlyThresholds) -> Outcome:
    """Visual-token swapping on the base checkpoint (prefill only) over OCR, counting, grounding
    and recognition pairs, in the ``swap_mode`` of the thresholds: the source's visual K/V at
    every layer ≥ L (``from``, the authors' code) or at layer L alone (``only``, the paper's text).

    ``changed[n, L]`` says whether pair n's answer changed as the task defines it (App. D.2.2).
    When vision is read in Early–Mid layers, swapping there changes answers and swapping in Late
    does not (``from``: a swap starting in Late comes after the reading). Per pair, the statistic
    is the mean of ``changed`` over L in Early ∪ Mid minus its mean over L in Late, averaged over
    all pairs (tasks pooled; each task's curve is reported). Reproduced when its bootstrap
    interval (over pairs) lies entirely above ``min_early_mid_minus_late``; not_reproduced when
    entirely at or below; inconclusive otherwise, or when the model does not read the attributes:
    the change rate is below ``min_full_swap_rate`` when swapping every layer (``from``, L = 0), or
    at every single layer (``only``). The mode is reported (``swap_mode``) and named in the reason.

    Raises:
        ValueError: no pairs, or the pairs were swapped in another mode than ``swap_mode``.
    """
    if not results:
        raise ValueError("localization.vision_early: no swap pairs were measured")
    mode = results[0].run.mode
    if {r.run.mode for r in results} != {t.swap_mode}:
        raise ValueError(f"localization.vision_early: swap_mode is {t.swap_mode!r} but the pairs were "
                         f"swapped in mode {sorted({r.run.mode for r in results})}")
    per_layer = swap_changed(results, regions.num_layers)                     # [N, L]
    by_region = region_means(per_layer, regions)
    early_mid = per_layer[:, list(regions.ranges["Early"]) + list(regions.ranges["Mid"])].mean(axis=1)
    per_item = early_mid - by_region["Late"]
    statistic = float(per_item.mean())
    interval = bootstrap_interval(per_item, level=t.confidence, n_resamples=t.bootstrap_resamples)
    tasks = sorted({r.task for r in results})
    metrics = {"swap_change_rate": layer_list(per_layer.mean(axis=0)), "swap_mode": mode,
               "n_pairs": len(results),
               **{f"swap_change_rate_{task}": layer_list(
                   per_layer[[r.task == task for r in results]].mean(axis=0)) for task in tasks},
               **{f"{r.lower()}_change_rate": float(v.mean()) for r, v in by_region.items()}}
    where = {"from": "swap from layer L on", "only": "swap at layer L alone"}[mode]
    # from: L = 0 swaps every layer; only: no single layer may matter on its own.
    full = float(per_layer[:, 0].mean()) if mode == "from" else float(per_layer.mean(axis=0).max())
    conditions = (requirement("full-swap change rate" if mode == "from" else "largest single-layer change rate",
                              full, ">=", t.min_full_swap_rate),
                  condition("change rate Early–Mid − Late", statistic, interval, t.min_early_mid_minus_late, "above"))
    if full < t.min_full_swap_rate:
        what = "at every layer" if mode == "from" else "at any single layer"
        metrics["n_to_decide"] = None
        return Outcome("inconclusive", f"swapping the visual tokens {what} changes at most {full:.0%} of the "
                       f"answers (< {t.min_full_swap_rate:.0%}; mode {mode}): the model does not read these "
                       "attributes, so where it reads them cannot be located (more pairs would not change "
                       "that)", statistic, interval,
                       t.min_early_mid_minus_late, metrics, series="swap_change_rate", conditions=conditions[:1])
    verdict = decide(interval, t.min_early_mid_minus_late, "above")
    reason = (f"{where} (mode {mode}): change rate with L in Early–Mid {early_mid.mean():.0%} vs Late "
              f"{by_region['Late'].mean():.0%}: difference {statistic:+.2f} ({t.confidence:.0%} CI "
              f"[{interval.low:+.2f}, {interval.high:+.2f}], threshold {t.min_early_mid_minus_late:g}); "
              f"{len(results)} pairs over {', '.join(tasks)}")
    if verdict == "inconclusive":
        metrics["n_to_decide"] = n_to_decide(len(results), statistic, interval, t.min_early_mid_minus_late)
        reason += "; " + decide_text(metrics["n_to_decide"])
    return Outcome(verdict, reason, statistic, interval, t.min_early_mid_minus_late, metrics,
                   series="swap_change_rate", conditions=conditions)
