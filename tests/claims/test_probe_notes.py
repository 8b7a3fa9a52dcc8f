"""What a probe suite says reaches the claims: no item for a measurement is ``skipped`` with the
suite's note (not ``error``), a capped draw is in ``probes_note`` and the reason, and truncated
responses are counted per model and metric in the ability claims."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from claim_helpers import scores_at

from vlmdiag.claims import all_claims, run_claim
from vlmdiag.errors import NoProbeItems
from vlmdiag.measure.tables import AbilityTable

CLAIM = "abilities.no_uniform_vision_gain"


class Fake:
    """A runner stand-in: ``value`` is the measurement (or an exception to raise)."""

    recipe, num_llm_layers = SimpleNamespace(name="r"), 6

    def __init__(self, value, notes=()):
        self.value, self.notes = value, tuple(notes)

    def has(self, need):
        return True

    def measure(self, name, settings=None):
        if isinstance(self.value, Exception):
            raise self.value
        return self.value

    def probe_notes(self, name, settings=None):
        return self.notes


def _table(truncated: int = 0) -> AbilityTable:
    stages = {"IN": scores_at({"Mvis": .5, "Mv2r": .2, "Mrea": .2}), "RL": scores_at({"Mvis": .5, "Mv2r": .6, "Mrea": .6})}
    stages["RL"]["Mrea"] = dataclasses.replace(stages["RL"]["Mrea"], truncated=truncated)
    return AbilityTable(stages)


def test_no_probe_item_skips_the_claim_with_the_suites_note(shipped):
    result = run_claim(all_claims()[CLAIM], Fake(NoProbeItems("the paper probe suite holds no vqa item: no MathVista "
                                                              "copy under /d/mathvista")), "paper", shipped.get(CLAIM))
    assert result.verdict == "skipped" and "no MathVista copy under /d/mathvista" in result.reason


def test_a_capped_draw_is_in_the_metrics_and_the_reason(shipped):
    note = "capped at 40: the paper suite holds 40 vqa item(s), 100 asked"
    result = run_claim(all_claims()[CLAIM], Fake(_table(), [note]), "paper", shipped.get(CLAIM))
    assert result.verdict not in ("error", "skipped"), result.reason
    assert result.metrics["probes_note"] == note and result.reason.endswith(f"[probes: {note}]")
    assert result.metrics["truncated"] == {"IN": {"Mvis": 0, "Mv2r": 0, "Mrea": 0}, "RL": {"Mvis": 0, "Mv2r": 0, "Mrea": 0}}
    assert "truncated" not in result.reason


def test_truncated_responses_are_counted_and_said(shipped):
    result = run_claim(all_claims()[CLAIM], Fake(_table(truncated=7)), "paper", shipped.get(CLAIM))
    assert result.metrics["truncated"]["RL"]["Mrea"] == 7 and "probes_note" not in result.metrics
    assert "truncated by the token budget before an answer (counted wrong): RL Mrea 7" in result.reason
