"""Evaluating one claim on one recipe: skip when an input is missing, judge at the chosen regions
and at every shifted cut, and turn any exception into an ``error`` verdict.

The measurements come from a :class:`Measurements` (the runner, :class:`vlmdiag.runner.Runner`,
in a run); this module only reads them, so it imports no runtime.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from vlmdiag.claims.registry import Claim, ClaimThresholds
from vlmdiag.errors import NoProbeItems
from vlmdiag.regions import Regions, regions_for

_NEEDS_TEXT = {"origin": "--origin (the checkpoint before the base's SFT, the paper's Base)",
               "rl_frozen": "--rl-frozen REGION=CKPT (RL runs with one region frozen)",
               "probes": "probe items",
               "origin_inference": "an --origin checkpoint that can run (a tokenizer and an image processor in "
                                   "its folder)",
               "inference": "checkpoints that can run: a tokenizer and an image processor in the base and RL "
                            "folders (tokenizer.json / tokenizer.model / vocab.json and "
                            "preprocessor_config.json / processor_config.json); weight-only folders "
                            "support only the weight claims"}


class Measurements(Protocol):
    """What :func:`run_claim` reads from a recipe's measurement runner."""

    recipe: Any  # has .name
    num_llm_layers: int

    def has(self, need: str) -> bool: ...

    def measure(self, name: str, settings: dict | None = None) -> Any: ...

    # Optional: probe_notes(name, settings) -> the suite's notes on the measurement's draws.


@dataclass
class ClaimResult:
    """One claim on one recipe, as the report stores it (SPEC §5)."""

    id: str
    recipe: str
    verdict: str
    reason: str
    statement: str
    source: str
    gate: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    series: str | None = None
    #: The sequential design's record (:func:`vlmdiag.sequential.run_claim_sequential`); None
    #: (and no ``sequential`` key in :meth:`as_dict`) when the claim was judged once, at ``n_items``.
    sequential: dict[str, Any] | None = None

    def as_dict(self) -> dict:
        out = {"id": self.id, "recipe": self.recipe, "verdict": self.verdict, "metrics": self.metrics,
               "reason": self.reason, "statement": self.statement, "source": self.source,
               "gate": self.gate, "series": self.series}
        if self.sequential is not None:
            out["sequential"] = self.sequential
        return out


def run_claim(claim: Claim, measurements: Measurements, regions_spec: str | Regions | Callable[[], Regions],
              thresholds: ClaimThresholds | None) -> ClaimResult:
    """Evaluate ``claim`` on ``measurements``.

    ``regions_spec`` is a ``--regions`` value, resolved for the recipe's layer count, or the
    regions themselves, or a function that derives them (``localized``: called inside the claim,
    so a derivation that fails is this claim's ``error``).

    Returns a :class:`ClaimResult` whatever happens: ``skipped`` when a needed input or the
    claim's thresholds are missing or the probe suite holds no item the measurement needs
    (:class:`~vlmdiag.errors.NoProbeItems`, its message the reason), ``error`` (with the exception
    in ``reason``) when measuring or judging raises, otherwise the verdict at ``regions_spec`` plus, in ``metrics``, the verdict at
    each boundary moved by ±1/±2 layers and whether it is robust to the cut, and, when the suite
    handed out fewer items than asked, its notes (``probes_note``, also ending the reason).
    """
    result = ClaimResult(claim.id, measurements.recipe.name, "skipped", "", claim.statement, claim.source,
                         gate=bool(thresholds and thresholds.gate))
    if thresholds is None:
        result.reason = "no entry for this claim in the thresholds file"
        return result
    missing = [need for need in sorted(claim.needs) if not measurements.has(need)]
    if missing:
        result.reason = "needs " + " and ".join(_NEEDS_TEXT[n] for n in missing)
        return result
    try:
        regions = (regions_spec() if callable(regions_spec) else regions_spec if isinstance(regions_spec, Regions)
                   else regions_for(regions_spec, measurements.num_llm_layers))
        settings = thresholds.probe_settings()
        if claim.regions_in_measurement:
            settings = {**(settings or {}), "regions": regions}
        measurement = measurements.measure(claim.measurement, settings)
        outcome = claim.judge(measurement, regions, thresholds)
        by_cut = {}
        if not claim.regions_in_measurement:
            for shifted in regions.shifted():
                by_cut[shifted.preset] = claim.judge(measurement, shifted, thresholds).verdict
    except (KeyboardInterrupt, SystemExit):
        raise
    except NoProbeItems as error:  # a suite without what this claim needs: not measurable, not broken
        result.reason = " ".join(str(error).split())
        return result
    except BaseException as error:  # noqa: BLE001 — a claim that raises must not stop the others
        result.verdict = "error"
        result.reason = f"{type(error).__name__}: {' '.join(str(error).split())}"  # one line
        result.metrics = {"traceback": traceback.format_exc(limit=8)}
        if _out_of_memory(error):
            result.reason += " [out of memory: fewer probe items (n_items) or a larger device may help]"
            _release_memory()
        return result
    # A measurement made at the cuts cannot be re-judged at others: robustness is unknown (None).
    robust = None if claim.regions_in_measurement else all(v == outcome.verdict for v in by_cut.values())
    result.verdict, result.reason, result.series = outcome.verdict, outcome.reason, outcome.series
    result.metrics = {
        "statistic": outcome.statistic,
        "interval": outcome.interval.as_dict() if outcome.interval else None,
        "threshold": outcome.threshold,
        "regions": regions.as_dict(),
        "robust_to_cut": robust,
        "verdicts_by_cut": by_cut,
        "conditions": [c.as_dict() for c in outcome.conditions],
        **outcome.metrics,
    }
    notes = getattr(measurements, "probe_notes", None)
    notes = notes(claim.measurement, settings) if notes is not None else ()
    if notes:
        result.metrics["probes_note"] = "; ".join(notes)
        unsaid = [note for note in notes if note not in result.reason]
        if unsaid:
            result.reason += f" [probes: {'; '.join(unsaid)}]"
    if robust is False:
        flips = sorted(k for k, v in by_cut.items() if v != outcome.verdict)
        result.reason += f" [not robust to the cut: differs at {', '.join(flips)}]"
    return result


def _out_of_memory(error: BaseException) -> bool:
    """Host ``MemoryError`` or torch's (CUDA/MPS) ``OutOfMemoryError``."""
    import sys

    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return isinstance(error, MemoryError) or (oom is not None and isinstance(error, oom))


def _release_memory() -> None:
    """After an out-of-memory error: drop the failed claim's garbage and the CUDA cache, so the
    claims that follow start with the memory back."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
