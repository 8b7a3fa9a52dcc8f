"""Scoring of the fine-grained abilities Mvis, Mv2r, Mrea (paper §2.2, Table 1, App. C; Eqs. 4–6):
pure functions from per-item correctness to scores, Wilson intervals, transition counts and
paired comparisons between stages or splices (SPEC §2, §4). The runner that asks the models is
:mod:`vlmdiag.measure.abilities`, which re-exports everything here.

Definitions (N = number of items of the kind; the denominator is always N):

* Mvis = (1/N) Σ 1[f(image) = y ∧ f(black) ≠ y] over ``vqa`` items (Eq. 4) = n_TF / N;
* Mv2r = (1/N) Σ 1[f(image) = y ∧ f(black + description) = y] over ``math_vqa`` items (Eq. 5) = n_TT / N;
* Mrea = (1/N) Σ 1[f(text) = y] over ``text_math`` items (Eq. 6).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vlmdiag.errors import ProbeError
from vlmdiag.probes.types import AbilityKind
from vlmdiag.stats import Interval, bootstrap_interval, mcnemar_exact, n_needed, wilson_interval

Condition = Literal["image", "black", "black_description", "text"]
Metric = Literal["Mvis", "Mv2r", "Mrea"]

#: The conditions each kind of item is asked under (A first, then B).
CONDITIONS: dict[str, tuple[Condition, ...]] = {
    "vqa": ("image", "black"),
    "math_vqa": ("image", "black_description"),
    "text_math": ("text",),
}
#: The metric each kind of item feeds.
METRIC_OF_KIND: dict[str, Metric] = {"vqa": "Mvis", "math_vqa": "Mv2r", "text_math": "Mrea"}
KIND_OF_METRIC: dict[str, AbilityKind] = {v: k for k, v in METRIC_OF_KIND.items()}  # type: ignore[misc]


# --------------------------------------------------------------------------- pure scoring


@dataclass(frozen=True)
class Transitions:
    """Counts of paired binary outcomes: TT (right under A and B), TF (right under A only),
    FT (right under B only), FF (wrong under both)."""

    tt: int
    tf: int
    ft: int
    ff: int

    @property
    def n(self) -> int:
        """Number of pairs."""
        return self.tt + self.tf + self.ft + self.ff

    def as_dict(self) -> dict:
        return {"TT": self.tt, "TF": self.tf, "FT": self.ft, "FF": self.ff, "N": self.n}


def transitions(a: Sequence[bool], b: Sequence[bool]) -> Transitions:
    """Transition counts of two aligned correctness vectors ``a`` and ``b`` (length N each).

    Raises:
        ValueError: the vectors differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"transitions: {len(a)} outcomes under A but {len(b)} under B")
    pairs = [(bool(x), bool(y)) for x, y in zip(a, b)]
    return Transitions(tt=pairs.count((True, True)), tf=pairs.count((True, False)),
                       ft=pairs.count((False, True)), ff=pairs.count((False, False)))


@dataclass(frozen=True)
class AbilityScore:
    """One fine-grained ability of one model.

    Attributes:
        metric: ``Mvis``, ``Mv2r`` or ``Mrea``.
        value: the score, a fraction in [0, 1] (the paper prints percentages).
        hits: items counted by the metric's indicator; ``value = hits / n``.
        n: number of items N (the denominator).
        interval: Wilson interval of ``value`` at ``interval.level``.
        item_ids: the items, in order.
        indicators: per item, the metric's indicator 1[...] (Eq. 4/5/6).
        transitions: TT/TF/FT/FF between condition A (image) and B (black, or black + description);
            None for Mrea, which has one condition.
        accuracy: accuracy under each condition asked.
        excluded: ids of items of this kind left out because a condition could not be asked
            (a ``math_vqa`` item without a description); they are not in N.
        truncated: responses (over the items and their conditions) cut off by the token budget
            before stating an answer; they count as wrong and stay in N.
    """

    metric: Metric
    value: float
    hits: int
    n: int
    interval: Interval
    item_ids: tuple[str, ...]
    indicators: tuple[bool, ...] = field(repr=False)
    transitions: Transitions | None
    accuracy: dict[str, float]
    excluded: tuple[str, ...] = ()
    truncated: int = 0

    def as_dict(self) -> dict:
        """JSON-ready record (per-item indicators included, keyed by item id)."""
        return {
            "metric": self.metric, "value": self.value, "hits": self.hits, "n": self.n,
            "interval": self.interval.as_dict(),
            "transitions": self.transitions.as_dict() if self.transitions else None,
            "accuracy": dict(self.accuracy), "excluded": list(self.excluded), "truncated": self.truncated,
            "per_item": {i: bool(x) for i, x in zip(self.item_ids, self.indicators)},
        }


@dataclass(frozen=True)
class SkippedAbility:
    """A metric that could not be scored, with the reason (e.g. Mv2r without descriptions)."""

    metric: Metric
    reason: str

    def as_dict(self) -> dict:
        return {"metric": self.metric, "skipped": True, "reason": self.reason}


def _check_vectors(metric: str, item_ids: Sequence[str], *vectors: Sequence[bool]) -> None:
    if not item_ids:
        raise ValueError(f"{metric}: no items (N = 0); the score is undefined")
    if len(set(item_ids)) != len(item_ids):
        raise ValueError(f"{metric}: duplicate item ids")
    for vector in vectors:
        if len(vector) != len(item_ids):
            raise ValueError(f"{metric}: {len(item_ids)} items but {len(vector)} outcomes")


def _score(metric: Metric, item_ids, indicators, trans, accuracy, level) -> AbilityScore:
    hits = int(sum(indicators))
    n = len(item_ids)
    return AbilityScore(metric=metric, value=hits / n, hits=hits, n=n,
                        interval=wilson_interval(hits, n, level=level), item_ids=tuple(item_ids),
                        indicators=tuple(bool(x) for x in indicators), transitions=trans,
                        accuracy=accuracy)


def score_mvis(item_ids: Sequence[str], image_correct: Sequence[bool], black_correct: Sequence[bool],
               *, level: float = 0.95) -> AbilityScore:
    """Mvis (paper Eq. 4): the share of items right with the image and wrong with a black image.

    Args:
        item_ids: N item ids (``vqa`` items).
        image_correct: per item, f(image) = y.
        black_correct: per item, f(black image of the same size) = y.
        level: confidence level of the Wilson interval.

    Returns:
        :class:`AbilityScore` with ``value = n_TF / N``.

    Raises:
        ValueError: N = 0, duplicate ids, or vectors of another length.
    """
    _check_vectors("Mvis", item_ids, image_correct, black_correct)
    trans = transitions(image_correct, black_correct)
    indicators = [bool(a) and not bool(b) for a, b in zip(image_correct, black_correct)]
    n = len(item_ids)
    return _score("Mvis", item_ids, indicators, trans,
                  {"image": sum(map(bool, image_correct)) / n, "black": sum(map(bool, black_correct)) / n}, level)


def score_mv2r(item_ids: Sequence[str], image_correct: Sequence[bool],
               black_description_correct: Sequence[bool], *, level: float = 0.95) -> AbilityScore:
    """Mv2r (paper Eq. 5): the share of items right with the image and right with a black image
    plus the exact text description.

    Args:
        item_ids: N item ids (``math_vqa`` items).
        image_correct: per item, f(image) = y.
        black_description_correct: per item, f(black image + description) = y.
        level: confidence level of the Wilson interval.

    Returns:
        :class:`AbilityScore` with ``value = n_TT / N``.

    Raises:
        ValueError: N = 0, duplicate ids, or vectors of another length.
    """
    _check_vectors("Mv2r", item_ids, image_correct, black_description_correct)
    trans = transitions(image_correct, black_description_correct)
    indicators = [bool(a) and bool(b) for a, b in zip(image_correct, black_description_correct)]
    n = len(item_ids)
    return _score("Mv2r", item_ids, indicators, trans,
                  {"image": sum(map(bool, image_correct)) / n,
                   "black_description": sum(map(bool, black_description_correct)) / n}, level)


def score_mrea(item_ids: Sequence[str], text_correct: Sequence[bool], *, level: float = 0.95) -> AbilityScore:
    """Mrea (paper Eq. 6): accuracy on text-only math items.

    Raises:
        ValueError: N = 0, duplicate ids, or a vector of another length.
    """
    _check_vectors("Mrea", item_ids, text_correct)
    n = len(item_ids)
    return _score("Mrea", item_ids, [bool(x) for x in text_correct], None,
                  {"text": sum(map(bool, text_correct)) / n}, level)


@dataclass(frozen=True)
class ItemOutcome:
    """One item's answers and their correctness under every condition it was asked in.

    Attributes:
        item_id / kind: the item.
        correct: condition -> graded correctness.
        responses: condition -> raw model response.
        missing: conditions that could not be asked, with the reason (Mv2r without a description).
        truncated: conditions whose response ran out of the token budget before stating an
            answer (:func:`vlmdiag.measure.grading.grade`); graded wrong.
    """

    item_id: str
    kind: AbilityKind
    correct: dict[str, bool]
    responses: dict[str, str] = field(repr=False)
    missing: dict[str, str] = field(default_factory=dict)
    truncated: tuple[str, ...] = ()

    @property
    def cell(self) -> str | None:
        """``"TT"``, ``"TF"``, ``"FT"`` or ``"FF"`` for the item's (A, B) pair, None for text items
        or when a condition is missing."""
        conditions = CONDITIONS[self.kind]
        if len(conditions) != 2 or any(c not in self.correct for c in conditions):
            return None
        return "".join("T" if self.correct[c] else "F" for c in conditions)


def score_abilities(outcomes: Sequence[ItemOutcome], *, level: float = 0.95) -> dict[str, AbilityScore | SkippedAbility]:
    """Score every metric the outcomes allow.

    Items of one kind missing a needed condition (``math_vqa`` without a description) are left
    out of that metric and listed in ``AbilityScore.excluded``; if none is left, the metric is a
    :class:`SkippedAbility` with the reason. A kind with no items at all is skipped too.
    ``AbilityScore.truncated`` counts the scored items' truncated responses.

    Returns:
        ``{"Mvis": ..., "Mv2r": ..., "Mrea": ...}``.
    """
    out: dict[str, AbilityScore | SkippedAbility] = {}
    for kind, metric in METRIC_OF_KIND.items():
        of_kind = [o for o in outcomes if o.kind == kind]
        usable = [o for o in of_kind if all(c in o.correct for c in CONDITIONS[kind])]
        if not usable:
            reasons = sorted({r for o in of_kind for r in o.missing.values()})
            out[metric] = SkippedAbility(metric, "; ".join(reasons) if reasons else f"no {kind} items")
            continue
        ids = [o.item_id for o in usable]
        vectors = [[o.correct[c] for o in usable] for c in CONDITIONS[kind]]
        scorer = {"Mvis": score_mvis, "Mv2r": score_mv2r, "Mrea": score_mrea}[metric]
        score = scorer(ids, *vectors, level=level)
        used = set(ids)
        excluded = tuple(o.item_id for o in of_kind if o.item_id not in used)
        truncated = sum(len(o.truncated) for o in usable)
        out[metric] = dataclasses.replace(score, excluded=excluded, truncated=truncated)
    return out


@dataclass(frozen=True)
class StageComparison:
    """A paired comparison of one metric between two models on the same items.

    Attributes:
        metric, label_a, label_b: what is compared (e.g. ``Mv2r``, ``IN``, ``IN:RL:RL``).
        n: items N.
        value_a, value_b: the two scores (fractions).
        delta: ``value_b - value_a``.
        interval: percentile bootstrap interval of ``delta``, resampling items (paired).
        p_value: two-sided exact McNemar p-value on the items whose indicator differs.
        transitions: TT/TF/FT/FF of the per-item indicators (A = ``label_a``, B = ``label_b``).
        threshold: the value of ``delta`` the interval is tested against (default 0).
        n_needed: items for the interval to clear ``threshold`` at the same effect (>= n; equal to
            n when it already does), None when ``delta`` equals the threshold.
    """

    metric: str
    label_a: str
    label_b: str
    n: int
    value_a: float
    value_b: float
    delta: float
    interval: Interval
    p_value: float
    transitions: Transitions
    threshold: float
    n_needed: int | None

    @property
    def conclusive(self) -> bool:
        """Whether the interval lies entirely on one side of ``threshold``."""
        return self.interval.low > self.threshold or self.interval.high < self.threshold

    def as_dict(self) -> dict:
        return {"metric": self.metric, "a": self.label_a, "b": self.label_b, "n": self.n,
                "value_a": self.value_a, "value_b": self.value_b, "delta": self.delta,
                "interval": self.interval.as_dict(), "p_value": self.p_value,
                "transitions": self.transitions.as_dict(), "threshold": self.threshold,
                "n_needed": self.n_needed, "conclusive": self.conclusive}


def compare_stages(a: AbilityScore, b: AbilityScore, *, label_a: str = "A", label_b: str = "B",
                   threshold: float = 0.0, level: float = 0.95, n_resamples: int = 2000,
                   seed: int = 0) -> StageComparison:
    """Paired difference ``b - a`` of one metric on the same items (SPEC §4; paper Tables 2–3).

    Items are matched by id (order may differ). The interval is a bootstrap over items of the
    per-item indicator differences; the p-value is the exact McNemar test on the items counted by
    one model only; ``n_needed`` extrapolates the interval's half-width as 1/sqrt(N).

    Raises:
        ProbeError: the scores are different metrics or cover different items.
    """
    if a.metric != b.metric:
        raise ProbeError(f"compare_stages: cannot compare {a.metric} of {label_a} with {b.metric} of {label_b}")
    if set(a.item_ids) != set(b.item_ids):
        only_a = sorted(set(a.item_ids) - set(b.item_ids))
        only_b = sorted(set(b.item_ids) - set(a.item_ids))
        raise ProbeError(
            f"compare_stages: {a.metric} of {label_a} and {label_b} cover different items "
            f"({len(only_a)} only in {label_a}: {only_a[:3]}, {len(only_b)} only in {label_b}: {only_b[:3]}); "
            "score both on the same probe set")
    by_id = dict(zip(b.item_ids, b.indicators))
    xa = np.array(a.indicators, dtype=float)
    xb = np.array([by_id[i] for i in a.item_ids], dtype=float)
    diff = xb - xa
    delta = float(diff.mean())
    interval = bootstrap_interval(diff, level=level, n_resamples=n_resamples, seed=seed)
    trans = transitions(xa.astype(bool).tolist(), xb.astype(bool).tolist())
    return StageComparison(
        metric=a.metric, label_a=label_a, label_b=label_b, n=a.n, value_a=float(xa.mean()),
        value_b=float(xb.mean()), delta=delta, interval=interval,
        p_value=mcnemar_exact(trans.tf, trans.ft), transitions=trans, threshold=threshold,
        n_needed=n_needed(a.n, delta, interval, threshold))


def compare_to_reference(scores: Mapping[str, Mapping[str, AbilityScore | SkippedAbility]], reference: str = "IN",
                         **options) -> dict[str, dict[str, StageComparison]]:
    """Paired comparisons of every model against ``reference`` (paper Table 2: each splice and RL
    against IN), metric by metric.

    Args:
        scores: model label -> :func:`score_abilities` result.
        reference: the label compared against.
        **options: passed to :func:`compare_stages` (``threshold``, ``level``, ``n_resamples``, ``seed``).

    Returns:
        ``{label: {metric: StageComparison}}`` for every label other than ``reference``; metrics
        skipped for either model are left out.

    Raises:
        KeyError: ``reference`` is not in ``scores``.
    """
    if reference not in scores:
        raise KeyError(f"compare_to_reference: no scores for the reference {reference!r}; have {sorted(scores)}")
    out: dict[str, dict[str, StageComparison]] = {}
    for label, by_metric in scores.items():
        if label == reference:
            continue
        out[label] = {}
        for metric, score in by_metric.items():
            base = scores[reference].get(metric)
            if isinstance(score, AbilityScore) and isinstance(base, AbilityScore):
                out[label][metric] = compare_stages(base, score, label_a=reference, label_b=label, **options)
    return out
