"""A recipe's checkpoints and the measurements made on them, each made once per run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vlmdiag.checkpoints import Checkpoint, open_checkpoint

ROLES = ("base", "rl", "origin")


@dataclass(frozen=True)
class Recipe:
    """The checkpoints of one RL recipe. ``base`` is the paper's IN, ``origin`` its Base."""

    name: str
    base: str
    rl: str
    origin: str | None = None
    rl_frozen: tuple[tuple[str, str], ...] = ()

    def specs(self) -> dict[str, str]:
        """``{role: spec}`` of the checkpoints given."""
        out = {"base": self.base, "rl": self.rl}
        if self.origin:
            out["origin"] = self.origin
        out.update({f"rl_frozen_{region}": spec for region, spec in self.rl_frozen})
        return out


class CheckpointCache:
    """Opened checkpoints by spec, shared by every recipe of a run (a spec is opened once)."""

    def __init__(self, *, allow_pickle: bool = False):
        self.allow_pickle = allow_pickle
        self._open: dict[str, Checkpoint] = {}

    def get(self, spec: str) -> Checkpoint:
        if spec not in self._open:
            self._open[spec] = open_checkpoint(spec, allow_pickle=self.allow_pickle)
        return self._open[spec]


@dataclass
class Evidence:
    """Lazily computed, memoized measurements of one recipe.

    ``progress(label)`` returns a ``(done, total)`` callback for a long step, or None.
    """

    recipe: Recipe
    checkpoints: CheckpointCache
    progress: Callable[[str], Callable[[int, int], None] | None] = lambda label: None
    wants_spectra: bool = False  # a spectral claim is selected: make one weight pass, not two
    _memo: dict[str, Any] = field(default_factory=dict)

    def has(self, need: str) -> bool:
        """Whether the recipe supplies what a claim ``needs`` (``origin``, ``rl_frozen``)."""
        return {"origin": self.recipe.origin is not None,
                "rl_frozen": bool(self.recipe.rl_frozen)}.get(need, False)

    def checkpoint(self, role: str) -> Checkpoint:
        return self.checkpoints.get(self.recipe.specs()[role])

    @property
    def num_llm_layers(self) -> int:
        return self.checkpoint("base").num_llm_layers

    def measure(self, name: str) -> Any:
        """The named measurement, computed on first use."""
        if name not in self._memo:
            self._memo[name] = getattr(self, f"_measure_{name}")()
        return self._memo[name]

    def _measure_weight_spectra(self):
        from vlmdiag.measure.weights import weight_deltas

        origin = self.checkpoint("origin") if self.recipe.origin else None
        result = weight_deltas(self.checkpoint("base"), self.checkpoint("rl"), origin, spectra=True,
                               progress=self.progress(f"{self.recipe.name}: weight spectra"))
        self._memo.setdefault("weight_deltas", result)
        return result

    def _measure_weight_deltas(self):
        if self.wants_spectra:
            return self.measure("weight_spectra")
        from vlmdiag.measure.weights import weight_deltas

        origin = self.checkpoint("origin") if self.recipe.origin else None
        return weight_deltas(self.checkpoint("base"), self.checkpoint("rl"), origin,
                             progress=self.progress(f"{self.recipe.name}: weight norms"))
