"""Checks during RL training: a ``transformers.TrainerCallback`` that logs the weight claims'
statistics (paper §3.2, Figs. 5–6) every N optimizer steps, from the live parameters, through the
trainer's own logging (so TensorBoard, W&B and every other ``report_to`` logger draw them as curves).

Usage with trl's ``GRPOTrainer`` (any ``transformers.Trainer`` works the same way)::

    trainer = GRPOTrainer(model=model, args=GRPOConfig(..., logging_steps=10), ...)
    trainer.add_callback(WeightClaimsCallback(trainer, "ckpts/IN", origin="ckpts/Base", every_n_steps=10))
    trainer.train()

At every N-th step the callback builds the :class:`~vlmdiag.measure.weights.WeightDeltas` of the
model in memory against the starting checkpoint (:class:`~vlmdiag.integrations.live.LiveWeights`),
runs the verdict rules of the weight claims on it (the ``judge`` of each claim in the registry, the
very functions the pytest run calls) and logs, per claim, ``vlmdiag/<claim id>/statistic``, its
interval, a ``verdict_code`` and every scalar metric of the JSON report that can change during RL
(dict metrics as ``…/<metric>/<key>``, e.g. ``vlmdiag/updates.energy_mid/rl_energy_share/Mid``; the
IN stage's are constant and left out). The values equal
(to fp32 rounding) what ``pytest --base START --rl SAVED [--origin ORIGIN]`` reports on the model
saved at that step. No checkpoint or any other file is written.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from transformers import Trainer, TrainerCallback

from vlmdiag.checkpoints import open_checkpoint
from vlmdiag.claims.registry import Outcome, all_claims
from vlmdiag.claims.thresholds import load_thresholds
from vlmdiag.errors import UsageError
from vlmdiag.integrations.live import LiveWeights
from vlmdiag.packaged import default_thresholds
from vlmdiag.regions import regions_for

logger = logging.getLogger(__name__)

#: ``…/verdict_code`` values: curves of a verdict over training.
VERDICT_CODES = {"reproduced": 1.0, "inconclusive": 0.0, "not_reproduced": -1.0}
_WEIGHT_MEASUREMENTS = ("weight_deltas", "weight_spectra")


class WeightClaimsCallback(TrainerCallback):
    """Log the weight claims' statistics every ``every_n_steps`` optimizer steps (and optionally a
    small-N probe claim every ``probe_every_n_steps``).

    Args:
        trainer: the ``transformers.Trainer`` (e.g. trl's ``GRPOTrainer``) whose loggers get the
            values; add the callback to it with ``trainer.add_callback``.
        start: the checkpoint RL started from (the paper's IN; ``--base`` of the pytest run): a
            folder, a hub id or ``organism:STAGE``.
        origin: the checkpoint before the start's SFT (the paper's Base; ``--origin``). Without it
            only ``updates.energy_mid`` runs (the size against IN and the spectra need ΔIN).
        every_n_steps: measure at every step divisible by it (default: the trainer's
            ``logging_steps``).
        spectra_every_n_steps: also compute singular values (one ``svdvals`` per LLM decoder matrix,
            the ones the claims read; ΔIN's once) at steps divisible by it, which runs the spectral
            claim ``updates.rl_steeper_mid_late``. Default ``5 * every_n_steps``; 0 turns spectra off.
        regions: ``paper``, ``thirds`` or ``A,B`` (as ``--regions``; ``localized`` needs inference).
        thresholds: a ``thresholds.yaml`` (default: the one vlmdiag ships).
        prefix: the logged keys start with ``<prefix>/``.
        stored_dtype: the dtype the RL checkpoint will be saved in (default: the parameters'):
            sets the RL side of the storage-precision floor.
        probe_every_n_steps: also run the small-N probe claim ``abilities.no_uniform_vision_gain``
            (:mod:`vlmdiag.integrations.probes`: the live model answers the probe suite's items,
            greedy, against IN and Base answered once) at steps divisible by it; 0 (default): never.
        probe_items: items per ability of the probe claim (default: the thresholds' ``n_items``).
        probes: the probe suite, as ``--probes`` (``organism``, ``synthetic[:…]``, ``paper:DIR``,
            a manifest); default as the pytest run's: ``organism`` when ``start`` (and ``origin``)
            are ``organism:*``, else ``synthetic``.

    Attributes:
        history: one dict per measured step: ``{"step": …, <logged key>: value, …}``.
        outcomes: ``{step: {claim id: Outcome}}``, verdicts and reasons included.

    Raises:
        UsageError: a step count or ``probe_items`` is not a positive integer, ``regions`` is
            localized or malformed, ``trainer`` is not a ``transformers.Trainer``, the thresholds
            file has no entry for the probe claim asked for, ``probes`` names no suite.
        ProbeError, NoProbeItems: the suite's files are malformed, or it holds no ``vqa`` item.
        CheckpointError, IncompatibleCheckpointsError: ``start``/``origin`` cannot be read or
            compared (or, for the probe claim, ``start`` has no tokenizer/processor); when training
            begins, the model's parameters do not match ``start`` (a missing, unexpected or
            mis-shaped tensor, named in the message).
    """

    def __init__(self, trainer: Trainer, start: str | Path, *, origin: str | Path | None = None,
                 every_n_steps: int | None = None, spectra_every_n_steps: int | None = None,
                 regions: str = "paper", thresholds: str | Path | None = None, prefix: str = "vlmdiag",
                 stored_dtype=None, probe_every_n_steps: int = 0, probe_items: int | None = None,
                 probes: str | None = None):
        if not isinstance(trainer, Trainer):
            raise UsageError(f"WeightClaimsCallback(trainer, ...): expected a transformers.Trainer, got "
                             f"{type(trainer).__name__}")
        for name, value in (("every_n_steps", every_n_steps), ("spectra_every_n_steps", spectra_every_n_steps),
                            ("probe_every_n_steps", probe_every_n_steps), ("probe_items", probe_items)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0
                                      or (value == 0 and name in ("every_n_steps", "probe_items"))):
                raise UsageError(f"WeightClaimsCallback: {name} must be a positive integer, got {value!r}")
        if str(regions).strip() == "localized":
            raise UsageError("WeightClaimsCallback: regions 'localized' need the localization probes; "
                             "use paper, thirds or A,B")
        self.trainer = trainer
        self.weights = LiveWeights(open_checkpoint(str(start)),
                                   open_checkpoint(str(origin)) if origin is not None else None,
                                   stored_dtype=stored_dtype)
        self.regions = regions_for(regions, self.weights.start.num_llm_layers)
        self.thresholds = load_thresholds(thresholds or default_thresholds())
        self.every_n_steps, self.spectra_every_n_steps, self.prefix = every_n_steps, spectra_every_n_steps, prefix
        self.claims = {c.id: c for c in all_claims().values()
                       if c.measurement in _WEIGHT_MEASUREMENTS and self.thresholds.get(c.id) is not None
                       and (origin is not None or "origin" not in c.needs)}
        self.probe_every_n_steps, self.probes = probe_every_n_steps, None
        if probe_every_n_steps:
            from vlmdiag.integrations.probes import CLAIM_ID, LiveAbilities
            from vlmdiag.extensions import load
            from vlmdiag.probes.suite import default_probes, open_suite

            load()  # outside pytest: the built-in suites (organism) and installed plugins' suites

            probe_thresholds = self.thresholds.get(CLAIM_ID)
            if probe_thresholds is None:
                raise UsageError(f"WeightClaimsCallback: probe_every_n_steps needs {CLAIM_ID} in "
                                 f"{self.thresholds.path}, which has no entry for it")
            if probe_items is not None:
                probe_thresholds = probe_thresholds.model_copy(update={"n_items": probe_items})
            suite = open_suite(probes or default_probes([str(start), str(origin) if origin is not None else None]))
            self.probes = LiveAbilities(self.weights.start, self.weights.origin, probe_thresholds, suite)
        self.history: list[dict] = []
        self.outcomes: dict[int, dict[str, Outcome]] = {}

    # ------------------------------------------------------------------ schedule

    def _steps(self, state) -> tuple[int, int]:
        every = self.every_n_steps or int(getattr(state, "logging_steps", 0) or 0) or 1
        spectra = 5 * every if self.spectra_every_n_steps is None else self.spectra_every_n_steps
        return every, spectra

    def due(self, step: int, state) -> tuple[bool, bool]:
        """(measure at ``step``?, with spectra?)."""
        every, spectra_every = self._steps(state)
        spectra = bool(spectra_every) and step % spectra_every == 0
        probes = self.probe_due(step)
        return step > 0 and (step % every == 0 or spectra or probes), step > 0 and spectra

    def probe_due(self, step: int) -> bool:
        """Whether the probe claim runs at ``step``."""
        return bool(self.probes) and step > 0 and step % self.probe_every_n_steps == 0

    # ------------------------------------------------------------------ events

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """Check the model against the starting checkpoint before the first step, so a missing
        or mis-shaped tensor stops training at once rather than N steps later."""
        if model is not None and state.is_world_process_zero:
            self.weights.check(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        measure, spectra = self.due(state.global_step, state)
        if not measure or not state.is_world_process_zero:
            return
        values = self.measure(model if model is not None else self.trainer.model, state.global_step, spectra=spectra)
        # Trainer.log, not trainer.log: trl's trainers override log() to merge and then clear the
        # metrics they accumulate between logging steps, which a log from a callback would cut short.
        # Its on_log event resets should_log, which would drop the trainer's own log of this step.
        should_log = control.should_log
        Trainer.log(self.trainer, dict(values))
        control.should_log = self.trainer.control.should_log = should_log
        return control

    # ------------------------------------------------------------------ measurement

    def measure(self, model, step: int, *, spectra: bool) -> dict[str, float]:
        """Measure ``model`` now, judge the weight claims, remember and return the logged values.

        Raises:
            IncompatibleCheckpointsError, UsageError, NonFiniteWeightsError: see
                :meth:`LiveWeights.measure`. A claim whose rule raises is left out (warned once per
                step); the pytest run reports it as ``error``.
        """
        began = time.perf_counter()
        deltas = self.weights.measure(model, spectra=spectra)
        values: dict[str, float] = {}
        outcomes: dict[str, Outcome] = {}
        for claim_id, claim in self.claims.items():
            if claim.measurement == "weight_spectra" and not spectra:
                continue
            try:
                outcome = claim.judge(deltas, self.regions, self.thresholds.get(claim_id))
            except Exception as error:  # noqa: BLE001 — one claim's rule failing never stops training
                logger.warning("vlmdiag: %s at step %d: %s: %s", claim_id, step, type(error).__name__, error)
                continue
            outcomes[claim_id] = outcome
            values.update(outcome_scalars(outcome, f"{self.prefix}/{claim_id}"))
        if self.probe_due(step):
            from vlmdiag.integrations.probes import CLAIM_ID

            try:
                outcomes[CLAIM_ID] = outcome = self.probes.judge(model, self.regions)
                values.update(outcome_scalars(outcome, f"{self.prefix}/{CLAIM_ID}"))
            except Exception as error:  # noqa: BLE001 — as the weight claims: warned, training goes on
                logger.warning("vlmdiag: %s at step %d: %s: %s", CLAIM_ID, step, type(error).__name__, error)
        values[f"{self.prefix}/seconds"] = time.perf_counter() - began
        self.outcomes[step] = outcomes
        self.history.append({"step": step, **values})
        return values


def outcome_scalars(outcome: Outcome, prefix: str, *, constants: bool = False) -> dict[str, float]:
    """The loggable scalars of an outcome: ``statistic``, ``interval_low``/``interval_high``,
    ``verdict_code`` (:data:`VERDICT_CODES`), every int/float metric, and the numbers inside dict
    metrics as ``<metric>/<key>[/<key>…]`` (e.g. ``rl_energy_share/Mid``, ``scores/RL/Mvis``).
    Lists (per-layer arrays), strings, booleans and None are left out, and unless ``constants`` so
    are the values that cannot change during RL: the IN stage's (``in_*``; ``IN``, ``Base``),
    the parameter shares, the comparisons between IN and Base, and settings (``level``,
    ``threshold``)."""
    out: dict[str, float] = {}
    if outcome.statistic is not None:
        out[f"{prefix}/statistic"] = float(outcome.statistic)
    if outcome.interval is not None:
        out[f"{prefix}/interval_low"] = float(outcome.interval.low)
        out[f"{prefix}/interval_high"] = float(outcome.interval.high)
    if outcome.verdict in VERDICT_CODES:
        out[f"{prefix}/verdict_code"] = VERDICT_CODES[outcome.verdict]

    def walk(path: tuple[str, ...], value, depth: int) -> None:
        if not constants and _constant(path):
            return
        if _number(value):
            out["/".join((prefix, *path))] = float(value)
        elif isinstance(value, dict) and depth < 4:
            for key, inner in value.items():
                walk((*path, str(key)), inner, depth + 1)

    for key, value in outcome.metrics.items():
        walk((key,), value, 1)
    return out


def _constant(path: tuple[str, ...]) -> bool:
    """Whether a metric path names a value fixed before RL starts (see :func:`outcome_scalars`)."""
    top = path[0]
    return (top.startswith("in_") or "parameter_share" in top or any(p in ("IN", "Base") for p in path[1:])
            or any(p.endswith("IN − Base") for p in path[1:]) or path[-1] in _SETTINGS)


#: Leaves of dict metrics that are settings, not measurements (an interval's level, a threshold).
_SETTINGS = ("level", "threshold")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not (
        isinstance(value, float) and math.isnan(value))
