"""The measurement runner's plan registry: a claim that disagrees with its plan is refused when
claims are checked (not as an ``error`` verdict at run time), plans take their items from the
run's probe suite, and the organism's suite hands out exactly the organism's items."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import BaseModel, Field

from vlmdiag.claims import all_claims
from vlmdiag.claims.registry import ClaimThresholds, ProbeThresholds
from vlmdiag.organism import OrganismSuite
from vlmdiag.probes.suite import Drawn
from vlmdiag.runner import (CheckpointCache, Plan, PlanError, RecipeCheckpoints, Runner, check_claim, check_claims,
                            get_plan, plans, register_plan)
from vlmdiag.runner.plans import unregister_plan


def test_every_built_in_claim_agrees_with_its_plan():
    check_claims(all_claims())
    assert {c.measurement for c in all_claims().values()} <= set(plans())


def test_a_thresholds_class_that_disagrees_with_its_plan_is_refused_naming_both():
    swap_claim = all_claims()["localization.vision_early"]
    # the swap plan takes mode; thresholds without it still agree (mode has a default) ...
    check_claim(replace(swap_claim, thresholds=ProbeThresholds))

    class Extra(ProbeThresholds):
        temperature: float = 0.0
        MEASUREMENT_SETTINGS = {**ProbeThresholds.MEASUREMENT_SETTINGS, "temperature": "temperature"}

    with pytest.raises(PlanError, match=r"localization.vision_early.*Extra.*'swap'.*supplies temperature"):
        check_claim(replace(swap_claim, thresholds=Extra))
    # ... a weight claim reading a probe measurement gives none of the settings it requires
    weight_claim = all_claims()["updates.energy_mid"]
    with pytest.raises(PlanError, match=r"does not supply max_new_tokens, n_items, seed"):
        check_claim(replace(weight_claim, measurement="skip"))
    with pytest.raises(PlanError, match=r"supplies max_new_tokens, n_items, seed, which the plan does not take"):
        check_claim(replace(weight_claim, thresholds=ProbeThresholds))
    with pytest.raises(PlanError, match="regions"):  # measured at the cuts, but the plan takes no regions
        check_claim(replace(all_claims()["abilities.no_uniform_vision_gain"], regions_in_measurement=True))

    class Misspelt(ClaimThresholds):
        MEASUREMENT_SETTINGS = {"n_items": "n_itmes"}

    with pytest.raises(PlanError, match="lacks: n_itmes"):
        check_claim(replace(weight_claim, thresholds=Misspelt))
    with pytest.raises(PlanError, match="'no_such', which no plan provides"):
        check_claim(replace(weight_claim, measurement="no_such"))


def test_a_plan_name_or_claim_id_registered_twice_is_refused():
    from vlmdiag.claims.registry import claim

    with pytest.raises(ValueError, match="'updates.energy_mid' is registered twice"):
        claim("updates.energy_mid", statement="", source="", measurement="weight_deltas",
              thresholds=ClaimThresholds)(lambda m, r, t: None)
    with pytest.raises(PlanError, match="'swap' is registered twice"):
        register_plan("swap", roles=("base",))(lambda runner, s: None)
    with pytest.raises(PlanError, match="no measurement plan 'nope'"):
        get_plan("nope")


class Items(BaseModel):
    n: int = Field(ge=1)
    seed: int


class CountingSuite:
    """A suite that hands out plain strings and records what was asked."""

    name = "counting"

    def __init__(self):
        self.asked = []

    def ability_items(self, kind, n, *, seed):
        self.asked.append((kind, n, seed))
        return Drawn(tuple(f"{kind}-{seed}-{i}" for i in range(n)))

    def swap_pairs(self, task, n, *, seed):
        return Drawn((), "none")

    def describe(self):
        return {"name": self.name}


@pytest.fixture
def items_plan():
    computed = []

    @register_plan("test_items", roles=("base",), settings=Items)
    def build(runner, s):
        items = runner.ability_items("vqa", s.n, s.seed).items
        return Plan(("base",), lambda: computed.append(items) or items, lambda: "cpu", probes=items)

    yield computed
    unregister_plan("test_items")


def test_plans_take_their_items_from_the_runs_suite_and_are_memoised(items_plan, planted):
    paths = planted("paper")
    suite = CountingSuite()
    runner = Runner(RecipeCheckpoints("r", str(paths["base"]), str(paths["rl"])), CheckpointCache(), probes=suite)
    assert runner.measure("test_items", {"n": 2, "seed": 5}) == ("vqa-5-0", "vqa-5-1")
    assert runner.measure("test_items", {"n": 2, "seed": 5}) == ("vqa-5-0", "vqa-5-1")
    assert len(items_plan) == 1 and runner.cache_log == [("test_items", "off")] * 2
    with pytest.raises(Exception, match="n"):  # settings are validated by the plan's model
        runner.measure("test_items", {"n": 0, "seed": 5})
    bare = Runner(RecipeCheckpoints("r", str(paths["base"]), str(paths["rl"])), CheckpointCache())
    assert not bare.has("probes")
    with pytest.raises(Exception, match="no probe suite"):
        bare.measure("test_items", {"n": 1, "seed": 0})


def test_the_organism_suite_hands_out_exactly_the_organisms_items():
    from vlmdiag.organism.tasks import SWAP_TASK_OF, ability_items, swap_pairs
    from vlmdiag.runner.measurements.swap import TASKS

    suite = OrganismSuite()
    for kind in ("vqa", "math_vqa", "text_math"):
        assert suite.ability_items(kind, 3, seed=7).items == tuple(ability_items(kind, 3, seed=7))
    assert TASKS == tuple(SWAP_TASK_OF)  # the swap plan asks the tasks in the order it always did
    assert suite.swap_pairs("counting", 2, seed=1).items == tuple(swap_pairs("counting", 2, seed=1))
    assert suite.describe()["name"] == "organism"


class CappedSuite(CountingSuite):
    """Holds one vqa item and no swap pair; answers with ``<answer>`` tags and a set budget."""

    answer_format, max_new_tokens = "think_answer", 256

    def ability_items(self, kind, n, *, seed):
        return Drawn(("vqa-0",), f"capped at 1: holds 1 {kind} item, {n} asked") if n > 1 else Drawn(("vqa-0",))


def test_the_suites_generation_settings_and_hash_key_the_cache_and_draw_notes_reach_the_claim(items_plan, planted,
                                                                                              tmp_path):
    from vlmdiag.cache import ResultsCache, key_of
    from vlmdiag.errors import NoProbeItems

    paths = planted("paper")
    recipe = RecipeCheckpoints("r", str(paths["base"]), str(paths["rl"]))
    store = ResultsCache(tmp_path / "cache")
    plain, capped = (Runner(recipe, CheckpointCache(), probes=s, results=store) for s in (CountingSuite(), CappedSuite()))
    assert (plain.answer_format, plain.budget(32)) == ("none", 32)
    assert (capped.answer_format, capped.budget(32)) == ("think_answer", 256)
    keys = []
    for runner in (plain, capped):
        plan = Plan(("base",), lambda: None, lambda: "cpu", probes=("vqa-0",))
        material = runner.cache_material("test_items", {"n": 1, "seed": 0}, plan)
        assert material["settings"] is not None
        keys.append(key_of(material))
    assert keys[0] != keys[1]  # the same items and settings, another answer format and budget
    other = Plan(("base",), lambda: None, lambda: "cpu", probes=("vqa-1",))
    assert key_of(plain.cache_material("test_items", {"n": 1, "seed": 0}, other)) != keys[0]  # items by content
    capped.measure("test_items", {"n": 3, "seed": 0})
    assert capped.probe_notes("test_items", {"n": 3, "seed": 0}) == ("capped at 1: holds 1 vqa item, 3 asked",)  # names its kind
    assert capped.probe_notes("test_items", {"n": 1, "seed": 0}) == ()

    @register_plan("test_pairs", roles=("base",), settings=Items)
    def build(runner, s):
        return Plan(("base",), lambda: 1 / 0, lambda: "cpu", probes=runner.swap_pairs("ocr", s.n, s.seed).items)

    try:
        with pytest.raises(NoProbeItems, match="holds no item for measurement 'test_pairs': swap ocr: none"):
            capped.measure("test_pairs", {"n": 1, "seed": 0})
    finally:
        unregister_plan("test_pairs")
