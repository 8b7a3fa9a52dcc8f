"""The command-line side of probe suites: ``--probes SPEC`` (ini ``vlmdiag_probes``) and
``--log-samples DIR`` (ini ``vlmdiag_log_samples``), the default suite of a run, the terminal
header line and the report's ``probes`` section.

The plugin adds :data:`OPTIONS` to its option group (``(flag, dest, metavar, help)``, stored as
``vlmdiag_<dest>``, each with an ini key of the same name) and calls :func:`run_suite`,
:func:`sample_log`, :func:`header_line` and :func:`probes_section`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from vlmdiag.probes.suite import ProbeSuite, default_probes, generation_settings, open_suite

OPTIONS = [
    ("--probes", "probes", "SPEC",
     "the probe suite the inference claims run on: organism, synthetic[:preset=real|small,answer_format=F,"
     "max_new_tokens=N], paper:DIR (the paper's released probes, MathVista and MATH-500 copies), or "
     "PATH.yaml (your manifest). Default: organism when every checkpoint is organism:*, else synthetic"),
    ("--log-samples", "log_samples", "DIR",
     "write every prompt, response, extracted answer and grade as JSON Lines, one file per model state "
     "(DIR/IN.jsonl, DIR/RL.jsonl, ...); never inside a checkpoint folder"),
]


def run_suite(value: str | None, checkpoint_specs: Iterable[str | None]) -> ProbeSuite:
    """The suite of a run: ``--probes`` / ``vlmdiag_probes`` when given, else :func:`default_probes`.

    Raises:
        UsageError: an unknown suite or option (listed in the message).
        ProbeError: the suite's files are malformed (``file:line``).
    """
    return open_suite(str(value).strip() if value else default_probes(checkpoint_specs))


def sample_log(value: str | os.PathLike | None, checkpoints: Iterable[str | os.PathLike] = ()):
    """The :class:`~vlmdiag.measure.samples.SampleLog` of ``--log-samples``, or None.

    Raises:
        UnsafeOutputError: the folder lies inside a checkpoint or is not a folder.
    """
    if not value:
        return None
    from vlmdiag.measure.samples import SampleLog

    return SampleLog(value, checkpoints=checkpoints)


def header_line(suite: ProbeSuite) -> str:
    """The terminal header's line, e.g. ``probes: synthetic (preset real; answer format boxed;
    up to 1024 new tokens)``."""
    settings = generation_settings(suite)
    source = suite.describe().get("source") or {}
    if isinstance(source, dict):
        where = source.get("preset") and f"preset {source['preset']}" or source.get("root") or source.get("manifest")
    else:  # a suite (the organism's, a plugin's) may describe its source in words
        where = str(source)
    parts = [p for p in (where, f"answer format {settings['answer_format']}",
                         settings["max_new_tokens"] and f"up to {settings['max_new_tokens']} new tokens") if p]
    return f"probes: {suite.name}" + (f" ({'; '.join(parts)})" if parts else "")


def probes_section(suite: ProbeSuite) -> dict:
    """The report's ``probes`` section: the suite's :meth:`~ProbeSuite.describe` (name, source,
    items per kind, content hash, notes, items left out) with its generation settings."""
    described = dict(suite.describe())
    described.setdefault("name", suite.name)
    for key, value in generation_settings(suite).items():
        described.setdefault(key, value)
    return described


#: The keys of the ``probes`` section that identify a suite before any item is drawn (what a
#: ``--baseline`` comparison can check up front; ``items`` and ``content_hash`` follow the draws).
IDENTITY_KEYS = ("name", "answer_format", "max_new_tokens")


def probes_identity(section: dict) -> dict:
    """The :data:`IDENTITY_KEYS` of a ``probes`` section (this run's, or a baseline report's)."""
    return {key: section.get(key) for key in IDENTITY_KEYS}
