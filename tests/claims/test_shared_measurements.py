"""Work done once per machine through the results cache: a model state's answers (the stage table,
the transplant sweep and the freezing claim share IN's and RL's, also across pytest-xdist
workers, and nothing between different states), and the up-front check of the inference inputs."""

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


@pytest.fixture
def generated(monkeypatch):
    """The fingerprints of the model states whose answers were generated, in order."""
    states = []
    real = abilities_module.run_abilities

    def recording(items, predict, grade=None, **kw):
        def counting(messages, images):
            states.append(kw["fingerprint"])
            return predict(messages, images)

        return real(items, counting, grade, **kw)

    monkeypatch.setattr(abilities_module, "run_abilities", recording)
    return states


def worker(runnable, store) -> Runner:
    """A fresh Runner, as a new pytest-xdist worker makes one, on the shared results cache."""
    recipe = Recipe("r", str(runnable["base"]), str(runnable["rl"]), str(runnable["origin"]),
                    (("Late", str(runnable["frozen_late"])),))
    return Runner(recipe, CheckpointCache(), probes=OrganismSuite(), results=store)


def test_in_and_rl_answers_are_generated_once_across_claims_and_workers(runnable, tmp_path, generated):
    store = ResultsCache(tmp_path)
    first = worker(runnable, store)
    stages = first.measure("abilities", {k: v for k, v in SETTINGS.items() if k != "regions"})
    fingerprint = {role: first.checkpoint(role).fingerprint for role in ("origin", "base", "rl", "rl_frozen_Late")}
    assert set(generated) == {fingerprint[r] for r in ("origin", "base", "rl")}

    generated.clear()
    freezing = worker(runnable, store).measure("freezing", SETTINGS)
    assert set(generated) == {fingerprint["rl_frozen_Late"]}  # IN and RL read from the first worker's entries
    assert freezing.scores["IN"] == stages.scores["IN"] and freezing.scores["RL"] == stages.scores["RL"]

    generated.clear()
    transplant = worker(runnable, store).measure("transplant", SETTINGS)
    assert len(transplant.scores) == 8 and len(set(generated)) == 6  # the six splices; IN and RL were known
    assert not {fingerprint["base"], fingerprint["rl"]} & set(generated)
    assert transplant.scores["IN"] == stages.scores["IN"]
    assert transplant.scores["RL"] == stages.scores["RL"]


def test_other_decoding_settings_generate_again(runnable, tmp_path, generated):
    store = ResultsCache(tmp_path)
    worker(runnable, store).measure("freezing", SETTINGS)
    generated.clear()
    worker(runnable, store).measure("freezing", {**SETTINGS, "max_new_tokens": SETTINGS["max_new_tokens"] + 1})
    assert len(set(generated)) == 3  # IN, RL, RL-frozen-Late: nothing reused across decoding budgets


def test_a_rerun_remembers_only_that_the_inference_inputs_passed(runnable, tmp_path, monkeypatch, pytestconfig):
    from vlmdiag.errors import CheckpointError
    from vlmdiag.plugin import RunState
    from vlmdiag.runtime import model

    paths = {role: shutil.copytree(runnable[role], tmp_path / role) for role in ("base", "rl")}
    checked = []
    real = model.inference_parts
    monkeypatch.setattr(model, "inference_parts", lambda path, **kw: checked.append(path.name) or real(path, **kw))
    monkeypatch.setenv("VLMDIAG_CACHE_DIR", str(tmp_path / "cache"))

    def validate(**options):
        checked.clear()
        RunState(recipes={"main": Recipe("main", str(paths["base"]), str(paths["rl"]))}, regions="paper",
                 thresholds_path=pytestconfig.rootpath / "thresholds.yaml", report_json=None, report_only=True,
                 allow_pickle=False, trust_remote_code=False, **options)._check_inference_inputs()
        return sorted(checked)

    assert validate() == ["base", "rl"]
    assert validate() == []  # same files: remembered
    assert validate(use_cache=False) == ["base", "rl"]  # --no-cache checks again
    processor = paths["rl"] / "processor_config.json"
    processor.write_text(processor.read_text() + "\n")
    assert validate() == ["rl"]  # a changed file is checked again
    processor.write_text("{not json")
    for _ in range(2):  # a failure is never remembered
        with pytest.raises(CheckpointError, match="processor_config.json"):
            validate()
