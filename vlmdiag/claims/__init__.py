"""Claims: the paper's findings as verdict rules over measurements."""

from vlmdiag.claims.evidence import CheckpointCache, Evidence, Recipe
from vlmdiag.claims.registry import CLAIMS, Claim, ClaimThresholds, Outcome, all_claims, claim
from vlmdiag.claims.runner import ClaimResult, run_claim
from vlmdiag.claims.thresholds import Thresholds, load_thresholds

__all__ = ["CLAIMS", "CheckpointCache", "Claim", "ClaimResult", "ClaimThresholds", "Evidence", "Outcome",
           "Recipe", "Thresholds", "all_claims", "claim", "load_thresholds", "run_claim"]
