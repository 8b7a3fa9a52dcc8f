"""The command-line side of probe suites: ``--probes SPEC`` (ini ``vlmdiag_probes``) and
``--log-samples DIR`` (ini ``vlmdiag_log_samples``), the default suite of a run, the terminal
header line and the report's ``probes`` section.

The plugin adds :data:`OPTIONS` to its option group (``(flag, dest, metavar, help)``, stored as
``vlmdiag_<dest>``, each with an ini key of the same name) and calls :func:`run_suite`,
:func:`sample_log`, :func:`header_line` and :func:`probes_section`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

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


def probes_section(suite: ProbeSuite, workers: Mapping[str, dict] | None = None) -> dict:
    """The report's ``probes`` section: the suite's :meth:`~ProbeSuite.describe` (name, source,
    items per kind, content hash, notes, items left out) with its generation settings.

    ``workers``: what each pytest-xdist worker drew (:func:`worker_draws`, by worker id), merged in
    so that ``-n N`` reports what a serial run reports: a suite with ``draws()`` / ``absorb()``
    (every :class:`~vlmdiag.probes.suite.RecordingSuite`) absorbs them exactly; the ``describe()``
    of any other suite is merged with its workers' (:func:`merge_described`), also in a serial run,
    so both read the same."""
    payloads = [workers[k] for k in sorted(workers or {})]
    if callable(getattr(suite, "absorb", None)):
        for payload in payloads:
            if "draws" in payload:
                suite.absorb(payload["draws"])
        described = dict(suite.describe())
    else:
        described = merge_described([suite.describe(), *(p["describe"] for p in payloads if "describe" in p)])
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


def worker_draws(suite: ProbeSuite) -> str:
    """JSON text of what a pytest-xdist worker's suite handed out, for the controller's
    :func:`probes_section`: ``{"draws": suite.draws()}`` for a suite that can :meth:`absorb` them,
    else ``{"describe": suite.describe()}``."""
    if callable(getattr(suite, "draws", None)) and callable(getattr(suite, "absorb", None)):
        return json.dumps({"draws": suite.draws()}, default=str)
    return json.dumps({"describe": suite.describe()}, default=str)


def merge_described(sections: list[dict]) -> dict:
    """One ``describe()`` of a suite without ``absorb()`` from several processes' (the controller's
    first, then the workers'): mappings merged key by key, lists as sorted sets (the draws of
    several workers have no order in common), other values from the last process that has one."""
    from vlmdiag.probes.suite import natural_sorted

    def merge(values):
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, dict) for v in present):
            keys = list(dict.fromkeys(k for v in present for k in v))
            return {k: merge([v.get(k) for v in present]) for k in keys}
        if present and all(isinstance(v, (list, tuple)) for v in present):
            items = {json.dumps(x, sort_keys=True, default=str): x for v in present for x in v}
            if all(isinstance(x, str) for x in items.values()):
                return natural_sorted(items.values())
            return [items[k] for k in sorted(items)]
        filled = [v for v in present if v not in ("", [], {})]
        return filled[-1] if filled else (present[-1] if present else None)

    return merge(list(sections)) or {}
