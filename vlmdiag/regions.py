"""Early / Mid / Late regions of the LLM decoder (SPEC §3; paper §3.1, App. E).

Layers here are 0-based LLM decoder indices ``0 … L-1`` (the unified index of the report is
``layer + 1``). A region set is two cuts ``(a, b)``: Early = ``[0, a)``, Mid = ``[a, b)``,
Late = ``[b, L)``.

The ``localized`` preset derives the cuts from the base checkpoint's own localization curves
(paper §3.1, Fig. 4): Early ends where visual-token swapping stops changing answers, Late starts
where skipping a layer starts to hurt reasoning (:func:`localized_regions` has the exact rule).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vlmdiag.errors import UsageError

REGION_NAMES = ("Early", "Mid", "Late")
PRESETS = ("paper", "thirds", "localized")
_CUTS = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*$")


@dataclass(frozen=True)
class Regions:
    """Two cuts over ``num_layers`` decoder layers. ``preset`` records where they came from."""

    num_layers: int
    cuts: tuple[int, int]
    preset: str
    # How ``localized`` cuts were derived (rule, curves, fallbacks); None for the other presets.
    derivation: dict | None = field(default=None, compare=False)

    def __post_init__(self):
        a, b = self.cuts
        if not 0 < a < b < self.num_layers:
            raise UsageError(
                f"regions {self.preset!r}: cuts {a},{b} do not split {self.num_layers} decoder layers "
                f"into three non-empty regions (need 0 < A < B < {self.num_layers})")

    @property
    def ranges(self) -> dict[str, range]:
        """``{"Early": range, "Mid": range, "Late": range}`` of 0-based decoder layers."""
        a, b = self.cuts
        return {"Early": range(0, a), "Mid": range(a, b), "Late": range(b, self.num_layers)}

    def region_of(self, layer: int) -> str:
        """The region name of a 0-based decoder layer."""
        a, b = self.cuts
        return "Early" if layer < a else "Mid" if layer < b else "Late"

    def shifted(self, steps: tuple[int, ...] = (-2, -1, 1, 2)) -> list[Regions]:
        """Every valid region set with one boundary moved by each of ``steps`` layers
        (SPEC §3: every verdict is re-checked with each boundary moved by ±1 and ±2)."""
        out = []
        for which in (0, 1):
            for step in steps:
                cuts = list(self.cuts)
                cuts[which] += step
                if 0 < cuts[0] < cuts[1] < self.num_layers:
                    out.append(Regions(self.num_layers, (cuts[0], cuts[1]), f"{self.preset} {'AB'[which]}{step:+d}"))
        return out

    def as_dict(self) -> dict:
        """``preset``, ``num_layers``, ``cuts``, each region's first and last layer, and for
        ``localized`` the ``derivation`` (see :func:`localized_regions`)."""
        out = {"preset": self.preset, "num_layers": self.num_layers, "cuts": list(self.cuts),
               **{name: [r.start, r.stop - 1] for name, r in self.ranges.items()}}
        if self.derivation is not None:
            out["derivation"] = self.derivation
        return out


def parse_regions(text: str) -> str:
    """Validate a ``--regions`` value (``paper``, ``thirds``, ``localized`` or ``A,B``) and return
    it normalized. Used as the option's ``type=``.

    Raises:
        UsageError: anything else, with the accepted forms.
    """
    value = str(text).strip()
    if value in PRESETS:
        return value
    match = _CUTS.match(value)
    if match and int(match[1]) < int(match[2]):
        return f"{int(match[1])},{int(match[2])}"
    raise UsageError(
        f"--regions {text!r}: expected paper, thirds, localized, or two increasing cuts A,B "
        f"(e.g. 8,20 for 8/12/8 layers of a 28-layer decoder)")


def regions_for(spec: str, num_layers: int) -> Regions:
    """The region set a ``--regions`` value gives for an L-layer decoder.

    ``paper``: sizes L//3 each, the remainder to Early first, then Mid (28 → 10/9/9, App. E).
    ``thirds``: cuts at L//3 and 2L//3 (the authors' code: 28 → 9/9/10).
    ``A,B``: explicit cuts. ``localized`` needs the base checkpoint's localization curves and is
    resolved by :func:`localized_regions` (through ``vlmdiag.runner.localized``).

    Raises:
        UsageError: malformed spec, ``num_layers < 3``, or cuts out of range.
    """
    spec = parse_regions(spec)
    if num_layers < 3:
        raise UsageError(f"regions need at least 3 decoder layers, the checkpoint has {num_layers}")
    if spec == "paper":
        size, extra = divmod(num_layers, 3)
        a = size + (extra >= 1)
        return Regions(num_layers, (a, a + size + (extra >= 2)), "paper")
    if spec == "thirds":
        return Regions(num_layers, (num_layers // 3, 2 * num_layers // 3), "thirds")
    if spec == "localized":
        raise UsageError("regions 'localized' come from the base checkpoint's localization curves, which a "
                         "pytest run measures (--regions localized); here use paper, thirds or A,B")
    a, b = (int(x) for x in spec.split(","))
    return Regions(num_layers, (a, b), spec)


class LocalizedRule(BaseModel):
    """The numbers of the ``localized`` rule (``localized_regions`` in ``thresholds.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    swap_fall: float = Field(
        gt=0, lt=1, description="Early ends at the first layer L from which on every swap starting at L changes at "
                                "most this fraction of the answers the full swap (L = 0) changes")
    skip_rise: float = Field(
        gt=0, le=1, description="Late starts at the first layer after Early whose skip error increase reaches this "
                                "fraction of the largest one after Early")
    min_signal: float = Field(
        ge=0, le=1, description="a full-swap change rate, or a largest skip error increase, below this (fraction "
                                "of items) locates nothing: that cut falls back to the paper preset's")


def localized_regions(swap_change_rate: Sequence[float], skip_error_increase: Sequence[float], num_layers: int,
                      rule: LocalizedRule, *, sources: dict | None = None) -> Regions:
    """The ``localized`` cuts of an L-layer decoder from the base checkpoint's localization curves
    (paper §3.1: vision functions act in Early(–Mid) layers, Fig. 4a; reasoning in Late, Fig. 4b).

    Args:
        swap_change_rate: float [L]: r(l), the share of swap pairs whose answer changes when the
            source image's visual K/V replace the target's at every layer ≥ l (the authors' swap,
            prefill only, tasks pooled). r(0) swaps every layer.
        skip_error_increase: float [L]: e(k), the unskipped accuracy minus the accuracy with layer
            k skipped (the error-rate increase; math items).
        num_layers: L.
        rule: the fractions of the rule.
        sources: recorded as is in the derivation (what the curves were measured on).

    The rule (cuts are 0-based layers where Mid and Late start):

    * **a** (Early → Mid) = 1 + the last layer l with r(l) > ``swap_fall`` · r(0): from layer a
      on, swapping the image no longer changes (more than that fraction of) the answers, so the
      model has read the image in layers < a.
    * **b** (Mid → Late) = the first layer k ≥ a + 1 with e(k) ≥ ``skip_rise`` · max_{k' ≥ a+1}
      e(k'): where skipping a layer starts to hurt reasoning, past Early (skipping the very first
      layers breaks every input, not reasoning in particular); Mid keeps at least one layer.

    Fallback, per cut, to the ``paper`` preset's cut (recorded with the reason): a when
    r(0) < ``min_signal`` (the swap changes too few answers to locate vision) or a > L − 2 (no room
    left for Mid and Late); b when max e < ``min_signal`` (skipping hurts nothing after Early),
    moved to a + 1 if the paper's b is not after a.

    Returns:
        a :class:`Regions` with ``preset="localized"`` and ``derivation`` = ``{"rule", "swap_change_rate",
        "skip_error_increase", "early_end": {"layer", "derived", "why"}, "late_start": {...}, "sources"}``.

    Raises:
        ValueError: a curve is not ``num_layers`` long or holds a non-finite value.
        UsageError: ``num_layers < 3``.
    """
    r = np.asarray(swap_change_rate, dtype=float)
    e = np.asarray(skip_error_increase, dtype=float)
    for name, curve in (("swap_change_rate", r), ("skip_error_increase", e)):
        if curve.shape != (num_layers,) or not np.isfinite(curve).all():
            raise ValueError(f"localized regions: {name} must be {num_layers} finite values, got {curve.tolist()}")
    paper = regions_for("paper", num_layers).cuts
    if r[0] < rule.min_signal:
        a, early = paper[0], {"derived": False, "why": f"swapping every layer changes {r[0]:.0%} of the answers "
                                                         f"(< min_signal {rule.min_signal:.0%}): paper cut"}
    else:
        above = np.flatnonzero(r > rule.swap_fall * r[0])
        a = int(above[-1]) + 1
        early = {"derived": True, "why": f"from layer {a} on a swap changes at most {rule.swap_fall:.0%} of "
                                         f"the {r[0]:.0%} the full swap changes"}
        if a > num_layers - 2:
            a, early = paper[0], {"derived": False, "why": f"swaps change answers up to layer {a - 1}, leaving no "
                                                           "room for Mid and Late: paper cut"}
    tail = e[a + 1:]
    if tail.size == 0 or tail.max() < rule.min_signal:
        largest = float(tail.max()) if tail.size else float("nan")
        b = paper[1] if paper[1] > a else a + 1
        late = {"derived": False, "why": f"skipping a layer after Early raises the error by at most {largest:.0%} "
                                         f"(< min_signal {rule.min_signal:.0%}): " +
                                         ("paper cut" if b == paper[1] else "paper cut moved after Early")}
    else:
        b = a + 1 + int(np.flatnonzero(tail >= rule.skip_rise * tail.max())[0])
        late = {"derived": True, "why": f"layer {b} is the first after Early whose skip raises the error by at "
                                        f"least {rule.skip_rise:.0%} of the largest rise ({tail.max():.0%})"}
    derivation = {"rule": rule.model_dump(), "swap_change_rate": r.tolist(), "skip_error_increase": e.tolist(),
                  "early_end": {"layer": a, **early}, "late_start": {"layer": b, **late},
                  "sources": dict(sources or {})}
    return Regions(num_layers, (a, b), "localized", derivation)
