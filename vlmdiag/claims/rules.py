"""Helpers the verdict rules share: per-region means, combining conditions, comparison and
kept-share texts, the N that would decide an inconclusive verdict. Pure functions over
measurement values (numpy, :mod:`vlmdiag.stats`); nothing here runs a model or imports torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from vlmdiag.claims.registry import condition
from vlmdiag.regions import REGION_NAMES, Regions
from vlmdiag.stats import Share, Side, decide, n_to_decide, n_to_decide_all

if TYPE_CHECKING:
    from vlmdiag.measure.abilities import StageComparison

MODES = ("teacher_forced", "own")
#: The abilities RL is expected to improve (paper Table 2/3): the gain transplants and freezing track.
GAIN_METRICS = ("Mv2r", "Mrea")


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
