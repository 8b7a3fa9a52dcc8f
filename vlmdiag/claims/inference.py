"""Measurement values of the inference claims (attention, abilities, transplant, freezing) and the
helpers their verdict rules share.

The models are run by :class:`vlmdiag.claims.evidence.Evidence` (``_measure_*``); this module holds
what those return, in a form a pure verdict rule can read (per-item arrays, so every interval is
a bootstrap over items).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
from dataclasses import dataclass

import numpy as np

from vlmdiag.measure.abilities import AbilityScore, SkippedAbility, StageComparison, compare_stages
from vlmdiag.claims.registry import condition
from vlmdiag.probes.types import AbilityItem
from vlmdiag.regions import REGION_NAMES, Regions
from vlmdiag.runtime.model import LoadedModel
from vlmdiag.stats import Share, Side, decide, kept_share, n_to_decide, n_to_decide_all

MODES = ("teacher_forced", "own")
#: The abilities RL is expected to improve (paper Table 2/3): the gain transplants and freezing track.
GAIN_METRICS = ("Mv2r", "Mrea")


@dataclass(frozen=True)
class AttentionComparison:
    """Reasoning→visual attention (paper Eq. 1) of IN and RL on the same image prompts.

    Attributes:
        item_ids: the N probe items.
        mass: ``mass[mode][model]``: float64 [N, L], per item and LLM layer, the attention mass
            from reasoning-token queries onto visual-token keys, averaged over heads and
            reasoning tokens (0..1; NaN where the response had no reasoning token). ``mode`` is
            ``teacher_forced`` (both models read one shared response) or ``own`` (each model's
            own greedy response); ``model`` is ``IN`` or ``RL``.
        mean: same layout, ``mass / |V|`` (Eq. 1 as printed, per visual token).
        shared_from: per item, whose own response was the shared teacher-forced sequence
            (``RL``; ``IN`` when RL's response was empty).
        mass_without_sinks: same layout as ``mass``, the mass on visual keys that are not visual
            sinks (Kang et al. 2025; :func:`vlmdiag.measure.attention_capture.sink_tokens`); None
            when sinks were not looked for.
        sinks: same layout, float64 [N, L]: visual sink tokens per item and layer (None likewise).
    """

    item_ids: tuple[str, ...]
    mass: dict[str, dict[str, np.ndarray]]
    mean: dict[str, dict[str, np.ndarray]]
    shared_from: tuple[str, ...]
    mass_without_sinks: dict[str, dict[str, np.ndarray]] | None = None
    sinks: dict[str, dict[str, np.ndarray]] | None = None


def measure_attention(base: LoadedModel, rl: LoadedModel, items: Sequence[AbilityItem], *,
                      max_new_tokens: int, progress: Callable[[int, int], None] | None = None,
                      sink_ratio: float | None = 20.0) -> AttentionComparison:
    """R→V attention of IN (``base``) and RL on image items, in both modes (SPEC §2).

    Each model first answers greedily (``own`` mode). The shared teacher-forced sequence of an
    item is RL's own response (IN's when RL's is empty); both models then read it.
    ``progress(done, 4)`` is called after each of the four passes (own IN, own RL, forced IN, RL).
    ``sink_ratio``: τ of the visual-sink test (Kang et al. 2025: 20); None skips it.

    Raises:
        ValueError: an item has no image.
    """
    from vlmdiag.measure.attention import attention_own_generation, attention_teacher_forced
    from vlmdiag.runtime.generate import image_prompt

    if any(item.image is None for item in items):
        raise ValueError("attention: every probe item needs an image")
    prompts = [image_prompt(item.question, item.image) for item in items]
    tick = (lambda done: progress(done, 4)) if progress is not None else (lambda done: None)  # noqa: E731
    own = {"IN": attention_own_generation(base, prompts, max_new_tokens=max_new_tokens, sink_ratio=sink_ratio)}
    tick(1)
    own["RL"] = attention_own_generation(rl, prompts, max_new_tokens=max_new_tokens, sink_ratio=sink_ratio)
    tick(2)
    shared, source = [], []
    for a_in, a_rl in zip(own["IN"], own["RL"]):
        use_rl = bool(a_rl.response.strip()) or not a_in.response.strip()
        shared.append(a_rl.response if use_rl else a_in.response)
        source.append("RL" if use_rl else "IN")
    forced = {"IN": attention_teacher_forced(base, prompts, shared, sink_ratio=sink_ratio)}
    tick(3)
    forced["RL"] = attention_teacher_forced(rl, prompts, shared, sink_ratio=sink_ratio)
    tick(4)
    runs = {"teacher_forced": forced, "own": own}
    head_mean = lambda values: np.stack([v.mean(axis=1) for v in values])  # noqa: E731  [N, L]
    sinks = {} if sink_ratio is None else dict(
        mass_without_sinks={mode: {m: head_mean([a.mass_without_sinks for a in r]) for m, r in by_model.items()}
                            for mode, by_model in runs.items()},
        sinks={mode: {m: np.stack([a.sinks.astype(float) for a in r]) for m, r in by_model.items()}
               for mode, by_model in runs.items()})
    return AttentionComparison(**sinks,
        item_ids=tuple(item.id for item in items),
        mass={mode: {m: head_mean([a.mass for a in r]) for m, r in by_model.items()} for mode, by_model in runs.items()},
        mean={mode: {m: head_mean([a.mean for a in r]) for m, r in by_model.items()} for mode, by_model in runs.items()},
        shared_from=tuple(source))


@dataclass(frozen=True)
class AbilityTable:
    """Mvis/Mv2r/Mrea of several models (stages, splices, frozen runs) on the same probe items.

    Attributes:
        scores: model label (``Base``, ``IN``, ``RL``, ``IN:RL:RL``, ``RL-frozen-Late``, ...) →
            metric → :class:`~vlmdiag.measure.abilities.AbilityScore` (or ``SkippedAbility``),
            in measurement order.
        notes: what was left out and why.
    """

    scores: dict[str, dict[str, AbilityScore | SkippedAbility]]
    notes: tuple[str, ...] = ()

    def compare(self, a: str, b: str, metric: str, *, level: float, n_resamples: int,
                threshold: float = 0.0) -> StageComparison | None:
        """Paired ``b − a`` of one metric (bootstrap over items, exact McNemar), or None when
        either model lacks the metric."""
        x, y = self.scores.get(a, {}).get(metric), self.scores.get(b, {}).get(metric)
        if not isinstance(x, AbilityScore) or not isinstance(y, AbilityScore):
            return None
        return compare_stages(x, y, label_a=a, label_b=b, threshold=threshold, level=level,
                              n_resamples=n_resamples)

    def kept_share(self, full: str, partial: str, metric: str, *, reference: str = "IN", level: float,
                   n_resamples: int) -> Share | None:
        """The share of ``full``'s gain over ``reference`` on ``metric`` that ``partial`` keeps,
        ``(partial − reference) / (full − reference)``, with its paired bootstrap interval over
        items (:func:`vlmdiag.stats.kept_share`); None when a model lacks the metric."""
        scores = [self.scores.get(label, {}).get(metric) for label in (reference, full, partial)]
        if not all(isinstance(s, AbilityScore) for s in scores):
            return None
        order = scores[0].item_ids
        if any(set(s.item_ids) != set(order) for s in scores):
            raise ValueError(f"{metric}: {reference}, {full} and {partial} were scored on different items")
        by_id = [dict(zip(s.item_ids, s.indicators)) for s in scores]
        aligned = [np.array([d[i] for i in order], dtype=float) for d in by_id]
        return kept_share(*aligned, level=level, n_resamples=n_resamples)

    def table(self) -> dict[str, dict[str, float | None]]:
        """``{label: {metric: value}}`` (fractions; None for a skipped metric), like the paper's
        Tables 1–3."""
        return {label: {m: (s.value if isinstance(s, AbilityScore) else None) for m, s in by.items()}
                for label, by in self.scores.items()}

    def transitions(self) -> dict[str, dict[str, dict | None]]:
        """``{label: {metric: TT/TF/FT/FF counts}}`` between each metric's two conditions."""
        return {label: {m: (s.transitions.as_dict() if isinstance(s, AbilityScore) and s.transitions else None)
                        for m, s in by.items()} for label, by in self.scores.items()}


def region_means(per_item_layer: np.ndarray, regions: Regions) -> dict[str, np.ndarray]:
    """``{region: [N]}``: the per-item mean over each region's layers of an ``[N, L]`` array."""
    return {r: per_item_layer[:, list(regions.ranges[r])].mean(axis=1) for r in REGION_NAMES}


def layer_list(values: np.ndarray) -> list[float | None]:
    """A per-layer array as a JSON-ready list (NaN → None)."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]


def combine(*verdicts: str) -> str:
    """All conditions of a rule must hold: reproduced when every part is, not_reproduced when
    any part is, else inconclusive."""
    if any(v == "not_reproduced" for v in verdicts):
        return "not_reproduced"
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    return "inconclusive"


def comparison_text(c: StageComparison) -> str:
    """``Mv2r IN:RL:RL − IN = +0.12 [0.04, 0.20] (N=50, p=0.01)``."""
    return (f"{c.metric} {c.label_b} − {c.label_a} = {c.delta:+.2f} "
            f"[{c.interval.low:+.2f}, {c.interval.high:+.2f}] (N={c.n}, McNemar p={c.p_value:.2g})")


def rl_gains(comparisons: Mapping[str, StageComparison | None]) -> tuple[list[str], str]:
    """RL's resolved gains over IN: the metrics of :data:`GAIN_METRICS` whose ``"{metric} RL − IN"``
    comparison has its interval entirely above 0, and a text of those comparisons (all of them,
    resolved or not, for a reason string)."""
    present = [(m, c) for m in GAIN_METRICS if (c := comparisons.get(f"{m} RL − IN")) is not None]
    return [m for m, c in present if c.interval.low > 0], "; ".join(comparison_text(c) for _, c in present)


def comparison_condition(c: StageComparison, threshold: float, side: str = "above"):
    """The :class:`~vlmdiag.claims.registry.Condition` that the paired ``c.label_b − c.label_a``
    change of ``c.metric`` lies on ``side`` of ``threshold``, named like ``Mv2r RL − IN``."""
    return condition(f"{c.metric} {c.label_b} − {c.label_a}", c.delta, c.interval, threshold, side)


def comparisons_dict(comparisons: Mapping[str, StageComparison | None]) -> dict:
    """JSON-ready comparisons, keyed like the input."""
    return {k: (c.as_dict() if c is not None else None) for k, c in comparisons.items()}


def n_to_resolve_gain(comparisons: Mapping[str, StageComparison | None]) -> int | None:
    """Items that would resolve RL's gain over IN at the observed effect: the smallest
    :func:`~vlmdiag.stats.n_to_decide` against 0 among the :data:`GAIN_METRICS` whose
    ``"{metric} RL − IN"`` is positive; None when none is (no N shows a gain that is not there)."""
    present = [c for m in GAIN_METRICS if (c := comparisons.get(f"{m} RL − IN")) is not None and c.delta > 0]
    needed = [x for c in present if (x := n_to_decide(c.n, c.delta, c.interval, 0.0)) is not None]
    return min(needed) if needed else None


def reason_ending(verdict: str, parts, metrics: dict, notes) -> str:
    """The end of a kept-share rule's reason (transplant, freezing): for an ``inconclusive`` verdict
    the N that would decide it (also stored as ``metrics["n_to_decide"]``), then the table's notes.
    ``parts``: ``(name, n_to_decide, holds)`` per condition, as the rules build them for ``combine``."""
    ending = ""
    if verdict == "inconclusive":
        metrics["n_to_decide"] = n_to_decide_all([(nd, holds) for _, nd, holds in parts])
        ending = "; " + decide_text(metrics["n_to_decide"])
    return ending + "".join("; " + note for note in notes)


def decide_text(n: int | None, goal: str = "decide it") -> str:
    """The reason's sentence for an ``n_to_decide``."""
    if n is None:
        return f"no N would {goal} at the observed effect (it sits on the threshold or shows no gain)"
    return f"about N = {n} items would {goal} at the observed effect (n_to_decide; SE shrinking as 1/√N)"


def share_part(share: Share, threshold: float, side: Side) -> tuple[str, int | None, bool]:
    """One kept-share condition of a rule: its verdict (the whole interval on ``side`` of
    ``threshold``), its ``n_to_decide`` and whether the observed share lies on that side."""
    if share.estimate is None:
        return "inconclusive", None, False
    holds = share.estimate > threshold if side == "above" else share.estimate < threshold
    return (decide(share.interval, threshold, side), n_to_decide(share.n, share.estimate, share.interval, threshold),
            holds)


def share_condition(share: Share, name: str, threshold: float, side: Side):
    """The :class:`~vlmdiag.claims.registry.Condition` of :func:`share_part`, named ``name``
    (undecided when the share is undefined, as :func:`share_part` reads it)."""
    c = condition(name, share.estimate, share.interval, threshold, side)
    return c if share.estimate is not None else dataclasses.replace(c, holds=None)


def share_text(share: Share, metric: str) -> str:
    """``Mv2r share 0.83 [0.61, 1.04]``."""
    if share.estimate is None:
        return f"{metric} share undefined (no gain)"
    return f"{metric} share {share.estimate:.2f} [{share.interval.low:.2f}, {share.interval.high:.2f}]"
