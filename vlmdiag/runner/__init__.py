"""The measurement runner: registered measurement plans (:mod:`vlmdiag.runner.plans`, one module
each under :mod:`vlmdiag.runner.measurements`) and :class:`Runner`, which makes them for one
recipe (memo, results cache, progress, loaded models, probe items from the run's suite).

Layering (docs/architecture.md): the runner imports checkpoints, probes and measurements; it
imports neither the claims nor the model organism. Claims read the values it returns.
"""

from vlmdiag.runner.checkpoints import ROLES, CheckpointCache, RecipeCheckpoints, can_run
from vlmdiag.runner.plans import (Plan, PlanError, PlanSpec, ProbeSettings, RegionSettings, SwapSettings,
                                  check_claim, check_claims, get_plan, plans, register_plan)
from vlmdiag.runner.runner import Runner

__all__ = ["ROLES", "CheckpointCache", "Plan", "PlanError", "PlanSpec", "ProbeSettings", "RecipeCheckpoints",
           "RegionSettings", "Runner", "SwapSettings", "can_run", "check_claim", "check_claims", "get_plan",
           "plans", "register_plan"]
