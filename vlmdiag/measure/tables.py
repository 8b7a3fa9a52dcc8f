"""Measurement values that verdict rules read: the attention comparison of IN and RL and the
ability table of several models. Plain numpy data (no torch), so :mod:`vlmdiag.claims` can read
them without loading a model runtime; the runner's plans (:mod:`vlmdiag.runner.measurements`)
make them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlmdiag.measure.abilities import AbilityScore, SkippedAbility, StageComparison, compare_stages
from vlmdiag.stats import Share, kept_share


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

    def truncated(self) -> dict[str, dict[str, int]]:
        """``{label: {metric: responses cut off by the token budget}}`` (counted as wrong, kept in N;
        :attr:`~vlmdiag.measure.abilities.AbilityScore.truncated`), scored metrics only."""
        return {label: {m: s.truncated for m, s in by.items() if isinstance(s, AbilityScore)}
                for label, by in self.scores.items()}

    def truncation_notes(self) -> tuple[str, ...]:
        """One note when any response was truncated (``"truncated by the token budget (counted
        wrong): IN Mv2r 3, RL Mrea 1; raise max_new_tokens"``), else none."""
        cut = [f"{label} {m} {n}" for label, by in self.truncated().items() for m, n in by.items() if n]
        if not cut:
            return ()
        return ("responses truncated by the token budget before an answer (counted wrong): " + ", ".join(cut)
                + "; a larger max_new_tokens (the suite's or thresholds.yaml's) may change the scores",)

    def transitions(self) -> dict[str, dict[str, dict | None]]:
        """``{label: {metric: TT/TF/FT/FF counts}}`` between each metric's two conditions."""
        return {label: {m: (s.transitions.as_dict() if isinstance(s, AbilityScore) and s.transitions else None)
                        for m, s in by.items()} for label, by in self.scores.items()}
