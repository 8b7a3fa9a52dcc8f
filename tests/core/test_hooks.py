"""vlmdiag's hooks (vlmdiag/hookspec.py) from a conftest.py: a claim, a measurement, a probe
suite, a checkpoint resolver and an architecture family, each used by a real pytest run
(pytester, in process), and forgotten when that run ends."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch  # noqa: F401  (loaded here, not first inside an in-process run: pytester drops the
#              modules a run imported, and torch's operator registry cannot be imported twice)
import transformers  # noqa: F401  (the same for what the runs below load: the model class and
from transformers import Qwen2_5_VLForConditionalGeneration  # noqa: F401  its processor, and the organism)
import vlmdiag.organism.build  # noqa: F401
import vlmdiag.runtime.model  # noqa: F401

pytest_plugins = ["pytester"]

CONFTEST = '''
import os

import pytest
from pydantic import BaseModel, Field

from vlmdiag.claims.registry import ClaimThresholds, Outcome
from vlmdiag.runner import Plan


class CountSettings(BaseModel):
    n: int


class LayersThresholds(ClaimThresholds):
    min_layers: int = Field(description="LLM layers the base must have")
    probe_n: int = Field(2, description="the measurement's n")
    MEASUREMENT_SETTINGS = {"n": "probe_n"}


def pytest_vlmdiag_add_checkpoint_resolvers(register_resolver):
    register_resolver("toy", lambda spec: os.environ["TOY_" + spec.partition(":")[2].upper()])


def pytest_vlmdiag_add_measurements(register_plan):
    @register_plan("layer_count", roles=("base",), settings=CountSettings)
    def build(runner, s):
        def compute():
            return {"layers": runner.num_llm_layers, "n": s.n, "suite": runner.probes.name}

        return Plan(("base",), compute, lambda: "cpu")


def pytest_vlmdiag_add_claims(claim):
    @claim("mine.enough_layers", statement="the base has enough LLM layers", source="conftest",
           measurement="layer_count", thresholds=LayersThresholds)
    def judge(value, regions, t):
        verdict = "reproduced" if value["layers"] >= t.min_layers else "not_reproduced"
        return Outcome(verdict, f"{value['layers']} layers (n={value['n']}, suite {value['suite']})",
                       statistic=float(value["layers"]), threshold=float(t.min_layers))


class TinySuite:
    name = "tiny"

    def __init__(self, arg=None):
        self.arg = arg

    def ability_items(self, kind, n, *, seed):
        from vlmdiag.probes.suite import Drawn
        from vlmdiag.probes.types import AbilityItem

        return Drawn(tuple(AbilityItem(id=f"{kind}-{i}", kind=kind, question="1+1?", answer="2")
                           for i in range(n)))

    def swap_pairs(self, task, n, *, seed):
        from vlmdiag.probes.suite import Drawn

        return Drawn((), "the tiny suite has no swap pairs")

    def describe(self):
        return {"name": self.name, "source": {"arg": self.arg}}


def pytest_vlmdiag_add_probe_suites(register_suite):
    register_suite("tiny", TinySuite)


def pytest_vlmdiag_add_families(register_family):
    import yaml
    from importlib import resources

    qwen = yaml.safe_load(resources.files("vlmdiag.adapters").joinpath("families.yaml").read_text())["qwen2_5_vl"]
    register_family("toy_family", {**qwen, "model_types": ["toy_vl"], "architectures": ["ToyVLForConditionalGeneration"]})
'''

TEST = '''
import pytest


@pytest.mark.claim("mine.enough_layers")
def test_enough_layers(diagnose, recipe):
    diagnose(recipe)


def test_the_suite_and_the_family_are_registered_during_the_run():
    from vlmdiag.adapters import adapters
    from vlmdiag.probes.suite import open_suite

    assert len(open_suite("tiny:x").ability_items("vqa", 3, seed=0).items) == 3
    assert adapters()["toy_family"].model_types == ("toy_vl",)
'''


def thresholds(min_layers: int, gate: bool = True) -> str:
    return textwrap.dedent(f"""\
        schema_version: 1
        claims:
          mine.enough_layers: {{gate: {str(gate).lower()}, confidence: 0.95, min_layers: {min_layers}}}
        """)


@pytest.fixture
def project(pytester, planted, monkeypatch):
    paths = planted("paper")
    for role in ("base", "rl"):
        monkeypatch.setenv(f"TOY_{role.upper()}", str(paths[role]))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_mine=TEST)
    return pytester


def run(pytester, *args):
    report = pytester.path / "report.json"
    result = pytester.runpytest_inprocess("test_mine.py", "-p", "no:randomly", "-p", "no:cacheprovider",
                                          "--base=toy:base", "--rl=toy:rl", f"--report-json={report}", *args)
    return result, (json.loads(report.read_text()) if report.is_file() else None)


def test_a_conftest_claim_runs_on_a_conftest_measurement_appears_in_the_report_and_is_forgotten(project):
    from vlmdiag.adapters import adapters
    from vlmdiag.claims import CLAIMS
    from vlmdiag.probes.suite import suite_names
    from vlmdiag.runner import plans

    project.makefile(".yaml", thresholds=thresholds(min_layers=3))
    result, report = run(project, "--probes=organism")  # toy:* checkpoints default to synthetic
    assert result.ret == 0, result.stdout.str()
    (mine,) = [c for c in report["claims"] if c["id"] == "mine.enough_layers"]
    assert mine["verdict"] == "reproduced" and mine["gate"] is True
    # the measurement got the claim's settings; the runner holds the run's suite (the organism's,
    # which registers through the same hook as the conftest's)
    assert mine["reason"] == "6 layers (n=2, suite organism)" and mine["metrics"]["statistic"] == 6.0
    result.assert_outcomes(passed=2)
    # what the hooks registered was for that run only
    assert "mine.enough_layers" not in CLAIMS and "layer_count" not in plans()
    assert "tiny" not in suite_names() and "toy_family" not in adapters()


def test_a_conftest_claim_gates(project):
    project.makefile(".yaml", thresholds=thresholds(min_layers=99))
    result, report = run(project)
    assert result.ret == 1
    assert [c["verdict"] for c in report["claims"] if c["id"] == "mine.enough_layers"] == ["not_reproduced"]


def test_a_claim_that_disagrees_with_its_plan_is_a_usage_error_before_anything_runs(project):
    project.makeconftest(CONFTEST.replace('measurement="layer_count"', 'measurement="weight_deltas"'))
    project.makefile(".yaml", thresholds=thresholds(min_layers=3))
    result, report = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR and report is None
    error = "\n".join(result.errlines)
    assert "mine.enough_layers" in error and "'weight_deltas'" in error and "supplies n" in error, error
