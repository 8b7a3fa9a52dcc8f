"""--probes defaults and the report's probes section."""

from __future__ import annotations

import pytest

from vlmdiag.errors import UsageError
from vlmdiag.plugin.probes import default_probes, header_line, probes_section, run_suite, sample_log


def test_default_suite():
    assert default_probes(["organism:in", "organism:rl", None]) == "organism"
    assert default_probes(["organism:in", "/ckpt/rl"]) == "synthetic"
    assert default_probes([]) == "synthetic"
    assert run_suite(None, ["/a", "/b"]).name == "synthetic"
    assert run_suite("synthetic:preset=small", ["organism:in"]).name == "synthetic"
    with pytest.raises(UsageError, match="no probe suite 'bogus'"):
        run_suite("bogus", [])


def test_header_and_section():
    suite = run_suite("synthetic:preset=small,max_new_tokens=64", [])
    assert header_line(suite) == "probes: synthetic (preset small; answer format boxed; up to 64 new tokens)"
    suite.ability_items("vqa", 3, seed=0)
    section = probes_section(suite)
    assert section["name"] == "synthetic" and section["items"] == {"vqa@seed=0": 3}
    assert len(section["content_hash"]) == 64 and section["answer_format"] == "boxed"


def test_sample_log_option(tmp_path):
    assert sample_log(None) is None
    assert sample_log(tmp_path / "s").folder == tmp_path / "s"


def test_identity_before_and_after_draws():
    from vlmdiag.plugin.probes import probes_identity

    suite = run_suite("synthetic", [])
    before = probes_identity(probes_section(suite))
    suite.swap_pairs("ocr", 1, seed=0)
    assert probes_identity(probes_section(suite)) == before == \
        {"name": "synthetic", "answer_format": "boxed", "max_new_tokens": 1024}


def test_the_header_names_a_suite_that_describes_its_source_in_words():
    """The organism's suite (the default of README command 1) describes its source as a string."""
    from vlmdiag.organism import OrganismSuite
    from vlmdiag.plugin.probes import header_line

    assert header_line(OrganismSuite()) == ("probes: organism (vlmdiag.organism.tasks (held-out synthetic items); "
                                            "answer format none)")


class _Small:
    """A suite holding two items of each ability kind and no swap pairs (so requests are capped and
    noted), drawn as a RecordingSuite draws."""

    @staticmethod
    def make():
        from vlmdiag.probes.suite import RecordingSuite
        from vlmdiag.probes.types import AbilityItem

        class Small(RecordingSuite):
            name = "small"

            def left_out(self):
                return ["m.yaml:10: bad image", "m.yaml:9: bad image"]

            def _ability_pool(self, kind, n, seed):
                return [AbilityItem(f"{kind}-{seed}-{i}", kind, "q?", str(i)) for i in range(2)], None

            def _swap_pool(self, task, n, seed):
                return (), f"no {task} pairs"

        return Small()


# Requests of three claims, in run order; split between two workers in another order.
REQUESTS = [("ability", "text_math", 1, 0), ("ability", "text_math", 5, 0), ("swap", "ocr", 3, 0),
            ("ability", "vqa", 1, 0), ("ability", "text_math", 3, 0), ("ability", "vqa", 2, 1)]


def _draw(suite, requests):
    for what, kind, n, seed in requests:
        (suite.ability_items if what == "ability" else suite.swap_pairs)(kind, n, seed=seed)
    return suite


def test_xdist_workers_draws_merge_into_the_serial_section():
    import json

    from vlmdiag.plugin.probes import worker_draws

    serial = probes_section(_draw(_Small.make(), REQUESTS))
    gw0 = json.loads(worker_draws(_draw(_Small.make(), REQUESTS[4:] + REQUESTS[:1])))
    gw1 = json.loads(worker_draws(_draw(_Small.make(), REQUESTS[3:0:-1])))
    merged = probes_section(_Small.make(), {"gw1": gw1, "gw0": gw0})
    assert merged == serial
    assert serial["items"] == {"swap:ocr@seed=0": 0, "text_math@seed=0": 2, "vqa@seed=0": 1, "vqa@seed=1": 2}
    assert serial["notes"]["text_math"].endswith("5 asked (2 item(s) left out, listed in left_out)")  # the largest
    assert serial["left_out"] == ["m.yaml:9: bad image", "m.yaml:10: bad image"]
    assert probes_section(_Small.make(), {"gw0": gw0})["items"] != serial["items"]  # one worker is not all


def test_a_suite_without_absorb_merges_its_workers_descriptions():
    import json

    from vlmdiag.plugin.probes import worker_draws

    class Plain:  # a plugin's suite: describe() only
        name = "plain"

        def __init__(self, drawn=()):
            self.drawn = list(drawn)

        def describe(self):
            return {"name": self.name, "source": "here", "drawn": self.drawn}

    serial = probes_section(Plain(["b", "a", "c"]))
    workers = {"gw0": json.loads(worker_draws(Plain(["c", "a"]))), "gw1": json.loads(worker_draws(Plain(["b"])))}
    assert probes_section(Plain(), workers) == serial
    assert serial["drawn"] == ["a", "b", "c"] and serial["answer_format"] == "none"


def test_the_organism_suite_reports_its_draws_under_xdist_as_serially():
    """The default suite of organism runs: items per kind and a content hash, and two workers'
    draws merge into the serial section (before, ``-n 2`` reported neither)."""
    import json

    from vlmdiag.organism import OrganismSuite
    from vlmdiag.plugin.probes import worker_draws

    requests = [("ability", "vqa", 3, 0), ("ability", "text_math", 2, 0), ("swap", "counting", 2, 0),
                ("ability", "vqa", 2, 0)]
    serial = probes_section(_draw(OrganismSuite(), requests))
    workers = {"gw0": json.loads(worker_draws(_draw(OrganismSuite(), requests[2:]))),
               "gw1": json.loads(worker_draws(_draw(OrganismSuite(), requests[:2])))}
    assert probes_section(OrganismSuite(), workers) == serial
    assert serial["items"] == {"swap:counting@seed=0": 2, "text_math@seed=0": 2, "vqa@seed=0": 3}
    assert len(serial["content_hash"]) == 64
