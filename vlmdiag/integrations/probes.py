"""A small-N probe claim during training: ``abilities.no_uniform_vision_gain`` (paper §2.2, Table 1,
Eqs. 4–6) with the model in memory as RL.

The probe items, the greedy decoding, the grading and the verdict rule are the pytest run's (the
run's probe suite with its answer format and budget, :func:`~vlmdiag.measure.abilities.run_abilities`,
:func:`~vlmdiag.measure.abilities.score_abilities`, the claim's ``judge``), with the claim's
``n_items``/``max_new_tokens``/``probe_seed`` from the thresholds file, so a thresholds file with a
small ``n_items`` gives the same verdict the pytest run with the same ``--probes`` gives on the model
saved at that step. IN and Base (``origin``) are answered once, each loaded from its folder and
released after.
"""

from __future__ import annotations

import torch

from vlmdiag.checkpoints import Checkpoint
from vlmdiag.claims.registry import Outcome, ProbeThresholds, all_claims
from vlmdiag.errors import CheckpointError

CLAIM_ID = "abilities.no_uniform_vision_gain"


class _Drawer:
    """What :func:`~vlmdiag.runner.measurements.abilities.ability_items` asks of a runner: the
    suite's items, drawn as the pytest run draws them."""

    def __init__(self, suite):
        self.probes = suite

    def ability_items(self, kind: str, n: int, seed: int):
        return self.probes.ability_items(kind, n, seed=seed)


class LiveAbilities:
    """Mvis/Mv2r/Mrea of the live model against IN (and Base) on a probe suite's ability items.

    Args:
        start, origin: the IN and Base checkpoints (``--base``, ``--origin``); each needs its
            tokenizer and processor. Base is left out (as the pytest run leaves it out) when its
            folder has none.
        thresholds: the claim's thresholds (``n_items`` per ability, ``max_new_tokens``,
            ``probe_seed``, and the verdict numbers).
        suite: the probe suite (:func:`~vlmdiag.probes.suite.open_suite`), as ``--probes`` gives
            the pytest run; its answer format and budget apply as they do there.

    Raises:
        CheckpointError: ``start`` has no tokenizer/processor (the message names the folder).
        NoProbeItems: the suite holds no ``vqa`` item (Mvis is the claim's statistic).
    """

    def __init__(self, start: Checkpoint, origin: Checkpoint | None, thresholds: ProbeThresholds, suite):
        from vlmdiag.probes.suite import generation_settings
        from vlmdiag.runner.checkpoints import can_run
        from vlmdiag.runner.measurements.abilities import ability_items

        if not can_run(start.path):
            raise CheckpointError(f"{start.path}: no tokenizer/processor; the probe check needs one to prompt the model")
        self.start, self.thresholds = start, thresholds
        self.origin = origin if origin is not None and can_run(origin.path) else None
        settings, generation = thresholds.probe_settings(), generation_settings(suite)
        self.items = ability_items(_Drawer(suite), settings["n_items"], settings["seed"], required=("vqa",))[0]
        self.answer_format = generation["answer_format"]
        self.max_new_tokens = generation["max_new_tokens"] or settings["max_new_tokens"]
        self._fixed: dict[str, dict] | None = None
        self._processor = None

    def _scores(self, loaded) -> dict:
        from vlmdiag.measure.abilities import greedy_decoding, make_predict, run_abilities, score_abilities

        predict = make_predict(loaded, max_new_tokens=self.max_new_tokens)[0]
        return score_abilities(run_abilities(self.items, predict, decoding=greedy_decoding(self.max_new_tokens),
                                             answer_format=self.answer_format))

    def _stage_scores(self, device: torch.device) -> dict[str, dict]:
        """``{"Base": …, "IN": …}``: answered once, each model loaded onto ``device`` and released."""
        if self._fixed is None:
            from vlmdiag.runtime.model import load_model

            fixed = {}
            for label, checkpoint in (("Base", self.origin), ("IN", self.start)):
                if checkpoint is not None:
                    loaded = load_model(checkpoint.path, device=device)
                    fixed[label] = self._scores(loaded)
                    del loaded
            self._fixed = fixed
        return self._fixed

    def judge(self, model: torch.nn.Module, regions) -> Outcome:
        """Answer the items with ``model`` (greedy, in eval mode; its train/eval mode is restored)
        and judge the claim on Base/IN/RL.

        Raises:
            CheckpointError: the model's architecture or image token is unknown to vlmdiag.
        """
        from vlmdiag.measure.tables import AbilityTable
        from vlmdiag.runtime.model import wrap_model
        from vlmdiag.runtime.processor import load_processor

        device = next(model.parameters()).device
        scores = dict(self._stage_scores(device))
        if self._processor is None:
            self._processor = load_processor(self.start.path)
        was_training = model.training
        try:
            scores["RL"] = self._scores(wrap_model(model, self._processor))
        finally:
            model.train(was_training)
        notes = () if "Base" in scores else ("Base stage left out: no origin with a tokenizer/processor",)
        return all_claims()[CLAIM_ID].judge(AbilityTable(scores, notes), regions, self.thresholds)
