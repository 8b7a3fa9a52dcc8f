"""Probe items: what the inference-time measurements run on, and the suites that hand them out
(``--probes``; :mod:`vlmdiag.probes.suite`). Importing the package registers the built-in suites."""

from vlmdiag.probes import builtin  # noqa: F401  (registers synthetic, paper, manifest)
from vlmdiag.probes.types import AbilityItem, SwapPair

__all__ = ["AbilityItem", "SwapPair"]
