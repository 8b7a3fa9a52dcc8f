"""Probe items: what the inference-time measurements run on."""

from vlmdiag.probes.types import AbilityItem, SwapPair

__all__ = ["AbilityItem", "SwapPair"]
