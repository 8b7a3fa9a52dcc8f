"""Early / Mid / Late regions of the LLM decoder (SPEC §3; paper §3.1, App. E).

Layers here are 0-based LLM decoder indices ``0 … L-1`` (the unified index of the report is
``layer + 1``). A region set is two cuts ``(a, b)``: Early = ``[0, a)``, Mid = ``[a, b)``,
Late = ``[b, L)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
        return {"preset": self.preset, "num_layers": self.num_layers, "cuts": list(self.cuts),
                **{name: [r.start, r.stop - 1] for name, r in self.ranges.items()}}


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
    resolved by :func:`localized_regions`.

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
        raise UsageError("--regions localized needs the inference-time localization curves, "
                         "which this run does not compute; use paper, thirds or A,B")
    a, b = (int(x) for x in spec.split(","))
    return Regions(num_layers, (a, b), spec)
