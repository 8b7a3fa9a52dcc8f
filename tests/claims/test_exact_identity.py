"""Answers are shared between model states only when the states are the same model byte for byte:
a checkpoint that differs from RL in one tensor (outside the bytes the old sampled fingerprint
read) gets its own answers, with or without the results cache and within one run; splices equal to
a parent share that parent's answers, and IN's answers never stand in for RL's."""

from __future__ import annotations

import shutil

import pytest
from claim_helpers import SMALL

from vlmdiag.cache import ResultsCache
from vlmdiag.organism import OrganismSuite
from vlmdiag.runner import CheckpointCache, RecipeCheckpoints as Recipe, Runner

from vlmdiag.measure import abilities as abilities_module
from vlmdiag.regions import regions_for

SETTINGS = {"n_items": SMALL["n_items"], "max_new_tokens": SMALL["max_new_tokens"], "seed": 0,
            "regions": regions_for("paper", 6)}


@pytest.fixture(scope="module")
def broken(runnable, tmp_path_factory, flip_outside_samples) -> dict:
    """``rl_negated_head``: RL with ``lm_head`` negated (a broken run); ``in_late``: IN with one
    Late-region matrix negated. Each differs from its source in that tensor only."""
    root = tmp_path_factory.mktemp("broken")
    rl = shutil.copytree(runnable["rl"], root / "rl_negated_head")
    late = shutil.copytree(runnable["base"], root / "in_late")
    assert flip_outside_samples(rl, "lm_head.weight") > 0
    assert flip_outside_samples(late, "layers.5.mlp.gate_proj.weight") > 0
    return {"rl_negated_head": rl, "in_late": late}


@pytest.fixture
def answers(monkeypatch) -> dict:
    """``{fingerprint: [answers generated]}``, in the order generated."""
    made: dict[str, list] = {}
    real = abilities_module.run_abilities

    def recording(items, predict, grade=None, **kw):
        def counting(messages, images):
            out = predict(messages, images)
            made.setdefault(kw["fingerprint"], []).extend(out)
            return out

        return real(items, counting, grade, **kw)

    monkeypatch.setattr(abilities_module, "run_abilities", recording)
    return made


def evidence(base, rl, store, frozen=None) -> Runner:
    recipe = Recipe("r", str(base), str(rl), None, (("Late", str(frozen)),) if frozen else ())
    return Runner(recipe, CheckpointCache(), probes=OrganismSuite(), results=store)


@pytest.mark.parametrize("cache", ["off", "fresh", "holds IN and RL"])
def test_a_checkpoint_one_tensor_away_from_rl_gets_its_own_answers(runnable, broken, answers, tmp_path, cache):
    store = None if cache == "off" else ResultsCache(tmp_path / "results")
    if cache == "holds IN and RL":
        evidence(runnable["base"], runnable["rl"], store).measure(
            "abilities", {k: v for k, v in SETTINGS.items() if k != "regions"})
    e = evidence(runnable["base"], runnable["rl"], store, frozen=broken["rl_negated_head"])
    e.measure("freezing", SETTINGS)
    rl, frozen = e.checkpoint("rl").fingerprint, e.checkpoint("rl_frozen_Late").fingerprint
    assert frozen != rl
    assert frozen in answers and rl in answers  # each model generated its own answers
    assert answers[frozen] != answers[rl]  # a negated lm_head answers otherwise: nothing was shared


@pytest.mark.parametrize("cache", ["off", "on"])
def test_splices_equal_to_a_parent_share_its_answers_and_only_those(runnable, broken, answers, tmp_path, cache):
    # RL here is IN with one Late matrix changed: every splice is IN or RL byte for byte.
    store = None if cache == "off" else ResultsCache(tmp_path / "results")
    e = evidence(runnable["base"], broken["in_late"], store)
    table = e.measure("transplant", SETTINGS)
    fingerprint = {role: e.checkpoint(role).fingerprint for role in ("base", "rl")}
    assert fingerprint["base"] != fingerprint["rl"]
    assert set(answers) == set(fingerprint.values())  # two models, generated once each
    late_from_rl = {label for label in table.scores if label == "RL" or label.endswith(":RL")}
    assert late_from_rl == {"RL", "IN:RL:RL", "IN:IN:RL", "RL:IN:RL"}
    for label, scores in table.scores.items():
        assert scores == table.scores["RL" if label in late_from_rl else "IN"], label
