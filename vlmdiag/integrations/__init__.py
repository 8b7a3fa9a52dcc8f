"""Integrations with training frameworks: checks during RL training (SPEC §8 "Training").

:class:`WeightClaimsCallback` is a ``transformers.TrainerCallback`` (works with trl's
``GRPOTrainer``) that logs the weight claims' statistics every N steps through the trainer's
loggers; :class:`LiveWeights` is its measurement of a model in memory against a checkpoint.
"""

from vlmdiag.integrations.live import LiveWeights, live_parameters
from vlmdiag.integrations.trainer import VERDICT_CODES, WeightClaimsCallback, outcome_scalars

__all__ = ["LiveWeights", "WeightClaimsCallback", "VERDICT_CODES", "live_parameters", "outcome_scalars"]
