"""The built-in probe suites, registered on import: ``synthetic``, ``paper:DIR`` and
``manifest:PATH`` (also ``--probes PATH.yaml``). The ``organism`` suite registers itself from
:mod:`vlmdiag.organism`, through the ``pytest_vlmdiag_add_probe_suites`` hook."""

from __future__ import annotations

from vlmdiag.probes.prompts import ANSWER_FORMATS
from vlmdiag.probes.suite import RecordingSuite, parse_options, register_suite
from vlmdiag.probes.synthetic import PRESETS, Generator

#: A budget that fits a reasoning model's ``<think>`` block on these short questions.
SYNTHETIC_MAX_NEW_TOKENS = 1024


class SyntheticSuite(RecordingSuite):
    """Procedurally drawn items (:mod:`vlmdiag.probes.synthetic`), any number of each kind, from
    the run's seed. Spec: ``synthetic[:preset=real|small,answer_format=...,max_new_tokens=N]``.

    Raises (on construction):
        UsageError: an unknown option, preset or answer format.
    """

    name = "synthetic"

    def __init__(self, arg: str | None = None):
        super().__init__()
        from vlmdiag.errors import UsageError

        options = parse_options(arg, {"preset": str, "answer_format": str, "max_new_tokens": int}, suite="synthetic")
        self.preset = options.get("preset", "real")
        if self.preset not in PRESETS:
            raise UsageError(f"--probes synthetic:{arg}: preset {self.preset!r} is not one of {', '.join(PRESETS)}")
        self.answer_format = options.get("answer_format", "boxed")
        if self.answer_format not in ANSWER_FORMATS:
            raise UsageError(f"--probes synthetic:{arg}: answer_format {self.answer_format!r} is not one of "
                             f"{', '.join(ANSWER_FORMATS)}")
        self.max_new_tokens = options.get("max_new_tokens", SYNTHETIC_MAX_NEW_TOKENS)
        if self.max_new_tokens < 1:
            raise UsageError(f"--probes synthetic:{arg}: max_new_tokens must be at least 1")

    def source(self) -> dict:
        preset = PRESETS[self.preset]
        return {"generator": "vlmdiag.probes.synthetic", "preset": self.preset,
                "sizes": [f"{w}x{h}" for w, h in preset.sizes]}

    def _ability_pool(self, kind, n, seed):
        generator = Generator(self.preset, seed)
        return [generator.ability(kind, i) for i in range(n)], None

    def _swap_pool(self, task, n, seed):
        generator = Generator(self.preset, seed)
        return [generator.swap_pair(task, i) for i in range(n)], None


def _paper(arg):
    from vlmdiag.probes.paper import PaperSuite

    return PaperSuite(arg)


def _manifest(arg):
    from vlmdiag.probes.manifest import ManifestSuite

    return ManifestSuite(arg)


register_suite("synthetic", SyntheticSuite)
register_suite("paper", _paper)
register_suite("manifest", _manifest)
