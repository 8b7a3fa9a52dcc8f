"""Probe suites: where the inference claims' items come from (``--probes SPEC``).

A suite hands out ability items per kind and swap pairs per task, deterministically from a seed,
and describes itself for the report's ``probes`` section. Suites are registered by name with
:func:`register_suite` (built-ins, the model organism and plugins alike, the latter through the
``vlmdiag_add_probe_suites`` hook); :func:`open_suite` turns a ``--probes`` value such as
``organism``, ``synthetic`` or ``paper:/data/probes`` into a suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from vlmdiag.errors import UsageError
from vlmdiag.probes.types import AbilityItem, AbilityKind, SwapPair, SwapTask


@dataclass(frozen=True)
class Drawn:
    """Items a suite handed out for one request.

    Attributes:
        items: at most the ``n`` asked for, in a fixed order for a given seed.
        note: why fewer than ``n`` came back (``"capped at 40: the suite holds 40 math_vqa items"``) or
            why none did (``"no MathVista copy under DIR/mathvista"``); ``None`` when all ``n`` came.
    """

    items: tuple
    note: str | None = None


@runtime_checkable
class ProbeSuite(Protocol):
    """What every probe suite provides. Implementations are cheap to construct; items are made or
    read when asked for."""

    name: str

    def ability_items(self, kind: AbilityKind, n: int, *, seed: int) -> Drawn:
        """Up to ``n`` :class:`AbilityItem` of ``kind`` (``vqa`` → Mvis, ``math_vqa`` → Mv2r,
        ``text_math`` → Mrea and layer skipping)."""

    def swap_pairs(self, task: SwapTask, n: int, *, seed: int) -> Drawn:
        """Up to ``n`` :class:`SwapPair` of ``task`` (paper §3.1.1)."""

    def describe(self) -> dict:
        """The report's ``probes`` section: ``name``, ``source`` (paths, seed, preset), and whatever
        else identifies the items (a content hash once items were drawn)."""


SuiteFactory = Callable[[str | None], ProbeSuite]
"""Builds a suite from the part of the spec after ``name:`` (``None`` when there is none)."""

_SUITES: dict[str, SuiteFactory] = {}


def register_suite(name: str, factory: SuiteFactory) -> None:
    """Make ``--probes NAME[:ARG]`` build its suite with ``factory(ARG)``.

    Raises:
        ValueError: ``name`` is empty, holds ``:``, or is already registered to another factory.
    """
    if not name or ":" in name:
        raise ValueError(f"probe suite name {name!r}: must be non-empty and hold no ':'")
    if _SUITES.get(name, factory) is not factory:
        raise ValueError(f"probe suite {name!r} is already registered")
    _SUITES[name] = factory


def suite_names() -> list[str]:
    """The registered suite names, sorted."""
    return sorted(_SUITES)


def open_suite(spec: str) -> ProbeSuite:
    """The suite a ``--probes`` value names (``NAME`` or ``NAME:ARG``).

    Raises:
        UsageError: no suite of that name is registered (the message lists those that are).
    """
    name, _, arg = spec.partition(":")
    factory = _SUITES.get(name)
    if factory is None:
        raise UsageError(f"--probes {spec!r}: no probe suite {name!r}; registered: {', '.join(suite_names()) or 'none'}")
    return factory(arg or None)


__all__ = ["AbilityItem", "Drawn", "ProbeSuite", "SwapPair", "open_suite", "register_suite", "suite_names"]
