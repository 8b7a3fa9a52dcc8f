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
