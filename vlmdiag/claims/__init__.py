"""Claims: the paper's findings as pure verdict rules over measurement values.

Nothing in this package runs a model or imports torch (``tests/claims/test_layering.py`` checks it
in a subprocess): the values come from the measurement runner (:mod:`vlmdiag.runner`), which the
plugin builds and hands to :func:`run_claim`.
"""

from vlmdiag.claims.evaluate import ClaimResult, Measurements, run_claim
from vlmdiag.claims.registry import CLAIMS, Claim, ClaimThresholds, Outcome, all_claims, claim
from vlmdiag.claims.thresholds import Thresholds, load_thresholds

__all__ = ["CLAIMS", "Claim", "ClaimResult", "ClaimThresholds", "Measurements", "Outcome", "Thresholds",
           "all_claims", "claim", "load_thresholds", "run_claim"]

_MOVED = {"CheckpointCache": "CheckpointCache", "Recipe": "RecipeCheckpoints", "Evidence": "Runner"}


def __getattr__(name: str):
    """Names that moved to :mod:`vlmdiag.runner` (``Evidence`` → ``Runner``, ``Recipe`` →
    ``RecipeCheckpoints``), for code written against the old paths; imported only when asked for,
    so importing the claims still loads no runtime."""
    if name in _MOVED:
        import vlmdiag.runner

        if name == "Evidence":
            return _evidence
        return getattr(vlmdiag.runner, _MOVED[name])
    raise AttributeError(f"module 'vlmdiag.claims' has no attribute {name!r}")


def _evidence(recipe, checkpoints, *, wants_spectra: bool = False, **kwargs):
    """The old ``Evidence(recipe, checkpoints, wants_spectra=...)``: a :class:`vlmdiag.runner.Runner`."""
    from vlmdiag.runner import Runner

    return Runner(recipe, checkpoints, wanted={"weight_spectra"} if wants_spectra else frozenset(), **kwargs)
