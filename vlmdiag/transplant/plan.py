"""Splice plans: which checkpoint supplies each tensor of a variant over concrete region cuts, and
the checks shared by the in-memory splicer and the writer."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from vlmdiag.checkpoints import Checkpoint, check_compatible, open_checkpoint
from vlmdiag.errors import IncompatibleCheckpointsError, UsageError
from vlmdiag.regions import REGION_NAMES, Regions, regions_for
from vlmdiag.transplant.variants import COMPONENTS, Side, Variant


@dataclass(frozen=True)
class SplicePlan:
    """Which checkpoint supplies each tensor of a splice.

    Attributes:
        variant: the Early:Mid:Late combination.
        regions: the region cuts over the LLM decoder (0-based layers).
        layer_source: source of each decoder layer, length L.
        component_source: source of each non-decoder component (:data:`COMPONENTS`).
    """

    variant: Variant
    regions: Regions
    layer_source: tuple[Side, ...]
    component_source: dict[str, Side] = field(compare=False)

    def layers_from(self, side: Side) -> tuple[int, ...]:
        """0-based decoder layers taken from ``side``."""
        return tuple(i for i, s in enumerate(self.layer_source) if s == side)

    def slices(self) -> list[tuple[Side, int, int]]:
        """Maximal runs ``(source, start, stop)`` of decoder layers with one source (stop exclusive)."""
        runs: list[tuple[Side, int, int]] = []
        for i, side in enumerate(self.layer_source):
            if runs and runs[-1][0] == side:
                runs[-1] = (side, runs[-1][1], i + 1)
            else:
                runs.append((side, i, i + 1))
        return runs

    def source_of(self, name: str, checkpoint: Checkpoint) -> Side:
        """The source of one canonical tensor name."""
        location = checkpoint.locate(name)
        if location.component == "llm":
            return self.layer_source[location.layer]
        return self.variant.components

    def as_dict(self, a: str = "IN", b: str = "RL") -> dict:
        """A JSON-ready record: variant label, regions, per-region and per-component sources."""
        name = {"A": a, "B": b}
        return {
            "variant": self.variant.label(a, b),
            "sources": {r: name[s] for r, s in zip(REGION_NAMES, self.variant.sources)},
            "regions": self.regions.as_dict(),
            "components_from": name[self.variant.components],
            "components": {c: name[s] for c, s in self.component_source.items()},
        }


def plan_splice(variant: Variant, regions: Regions) -> SplicePlan:
    """Resolve a variant over concrete region cuts (see :func:`vlmdiag.regions.regions_for`)."""
    layer_source: list[Side] = []
    for region_name, side in zip(REGION_NAMES, variant.sources):
        layer_source.extend([side] * len(regions.ranges[region_name]))
    return SplicePlan(variant, regions, tuple(layer_source),
                      {c: variant.components for c in COMPONENTS})


def as_checkpoint(value: Checkpoint | str | os.PathLike) -> Checkpoint:
    return value if isinstance(value, Checkpoint) else open_checkpoint(str(value))


def resolve_regions(spec: Regions | str, num_layers: int) -> Regions:
    if isinstance(spec, Regions):
        if spec.num_layers != num_layers:
            raise UsageError(f"regions are for {spec.num_layers} decoder layers, the checkpoints have {num_layers}")
        return spec
    return regions_for(spec, num_layers)


def check_pair(a: Checkpoint, b: Checkpoint) -> None:
    """Refuse pairs that cannot be spliced, before any tensor is read."""
    try:
        check_compatible(a, b)
    except IncompatibleCheckpointsError as error:
        raise IncompatibleCheckpointsError(f"cannot splice {a.path} with {b.path}: {error}") from error
