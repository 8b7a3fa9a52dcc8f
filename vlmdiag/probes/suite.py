"""Probe suites: where the inference claims' items come from (``--probes SPEC``).

A suite hands out ability items per kind and swap pairs per task, deterministically from a seed,
and describes itself for the report's ``probes`` section. Suites are registered by name with
:func:`register_suite` (built-ins, the model organism and plugins alike, the latter through the
``vlmdiag_add_probe_suites`` hook); :func:`open_suite` turns a ``--probes`` value such as
``organism``, ``synthetic`` or ``paper:/data/probes`` into a suite.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol, runtime_checkable

from vlmdiag.errors import UsageError
from vlmdiag.probes.types import AbilityItem, AbilityKind, SwapPair, SwapTask


@dataclass(frozen=True)
class Drawn:
    """Items a suite handed out for one request.

    Attributes:
        items: at most the ``n`` asked for, in a fixed order for a given seed.
        note: why fewer than ``n`` came back (``"capped at 40: the suite holds 40 math_vqa items"``) or
            why none did (``"no MathVista copy under DIR/mathvista"``); ``None`` when all ``n`` came.
    """

    items: tuple
    note: str | None = None

    @property
    def content_hash(self) -> str:
        """sha256 (hex) of the items' contents (:func:`items_hash`)."""
        return items_hash(self.items)


def items_hash(items: Sequence) -> str:
    """sha256 (hex) of probe items by content: every field but ``meta`` (which holds paths and
    line numbers), images by their pixels, so a moved folder keeps its hash and one changed pixel
    does not."""
    from vlmdiag.cache import canonical

    described = [{f.name: canonical(getattr(item, f.name)) for f in fields(item) if f.name != "meta"}
                 for item in items]
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


@runtime_checkable
class ProbeSuite(Protocol):
    """What every probe suite provides. Construction checks the suite's files (a malformed one
    raises :class:`~vlmdiag.errors.ProbeError` naming ``file:line`` before any model loads); items
    are made or decoded when asked for.

    Optional attributes (read with :func:`generation_settings`): ``answer_format``, the answer
    instruction appended to every ability question (a key of
    :data:`vlmdiag.probes.prompts.ANSWER_FORMATS`, default ``"none"``), and ``max_new_tokens``, the
    generation budget the suite's items need (reasoning models write long answers; default
    ``None``: the claim's ``max_new_tokens`` from thresholds.yaml)."""

    name: str

    def ability_items(self, kind: AbilityKind, n: int, *, seed: int) -> Drawn:
        """Up to ``n`` :class:`AbilityItem` of ``kind`` (``vqa`` → Mvis, ``math_vqa`` → Mv2r,
        ``text_math`` → Mrea and layer skipping)."""

    def swap_pairs(self, task: SwapTask, n: int, *, seed: int) -> Drawn:
        """Up to ``n`` :class:`SwapPair` of ``task`` (paper §3.1.1)."""

    def describe(self) -> dict:
        """The report's ``probes`` section: ``name``, ``source`` (paths, seed, preset), and whatever
        else identifies the items (a content hash once items were drawn)."""


def generation_settings(suite: ProbeSuite) -> dict:
    """``{"answer_format": ..., "max_new_tokens": ...}`` of a suite (defaults ``"none"``, ``None``)."""
    return {"answer_format": getattr(suite, "answer_format", "none") or "none",
            "max_new_tokens": getattr(suite, "max_new_tokens", None)}


SuiteFactory = Callable[[str | None], ProbeSuite]
"""Builds a suite from the part of the spec after ``name:`` (``None`` when there is none)."""

_SUITES: dict[str, SuiteFactory] = {}


def register_suite(name: str, factory: SuiteFactory) -> None:
    """Make ``--probes NAME[:ARG]`` build its suite with ``factory(ARG)``.

    Raises:
        ValueError: ``name`` is empty, holds ``:``, or is already registered to another factory.
    """
    if not name or ":" in name:
        raise ValueError(f"probe suite name {name!r}: must be non-empty and hold no ':'")
    if _SUITES.get(name, factory) is not factory:
        raise ValueError(f"probe suite {name!r} is already registered")
    _SUITES[name] = factory


def _register_builtins() -> None:
    """Import the module that registers the built-in suites (synthetic, paper, manifest; the organism
    registers its own through the pytest_vlmdiag_add_probe_suites hook)."""
    import vlmdiag.probes.builtin  # noqa: F401


def suite_names() -> list[str]:
    """The registered suite names, sorted."""
    _register_builtins()
    return sorted(_SUITES)


def default_probes(checkpoint_specs: Iterable[str | None]) -> str:
    """``organism`` when every given checkpoint is ``organism:*`` (and there is at least one),
    else ``synthetic``."""
    specs = [str(s) for s in checkpoint_specs if s]
    return "organism" if specs and all(s.startswith("organism:") for s in specs) else "synthetic"


def open_suite(spec: str) -> ProbeSuite:
    """The suite a ``--probes`` value names: ``NAME``, ``NAME:ARG``, or the path of a YAML
    manifest (``*.yaml`` / ``*.yml``, same as ``manifest:PATH``).

    Raises:
        UsageError: no suite of that name is registered (the message lists those that are).
        ProbeError: the suite's files are malformed (the message names the file and line).
    """
    _register_builtins()

    if spec.lower().endswith((".yaml", ".yml")) and spec.partition(":")[0] not in _SUITES:
        spec = f"manifest:{spec}"
    name, _, arg = spec.partition(":")
    factory = _SUITES.get(name)
    if factory is None:
        raise UsageError(f"--probes {spec!r}: no probe suite {name!r}; registered: {', '.join(suite_names()) or 'none'}")
    return factory(arg or None)


class RecordingSuite:
    """Shared behaviour of the built-in suites: cap a request at what the suite holds (saying so
    in :attr:`Drawn.note`), and remember what was handed out for :meth:`describe`.

    Subclasses set ``name``, ``answer_format``, ``max_new_tokens`` and implement
    :meth:`source`, :meth:`_ability_pool` and :meth:`_swap_pool`."""

    name = "suite"
    answer_format = "none"
    max_new_tokens: int | None = None

    def __init__(self):
        self._handed: dict[str, dict] = {}
        self._notes: dict[str, tuple[int, str]] = {}  # what -> (n asked, note) of the largest request
        self._absorbed_left_out: set[str] = set()

    def source(self) -> dict:
        """Where the items come from (paths, preset); part of :meth:`describe`."""
        return {}

    def left_out(self) -> list[str]:
        """``"file:line: reason"`` of each item left out (undecodable image, ...)."""
        return []

    def _ability_pool(self, kind: str, n: int, seed: int) -> tuple[Sequence, str | None]:
        """Up to ``n`` items of ``kind`` (more are cut), and why there are fewer than ``n`` (None:
        the generic "capped at" note)."""
        raise NotImplementedError

    def _swap_pool(self, task: str, n: int, seed: int) -> tuple[Sequence, str | None]:
        raise NotImplementedError

    def _hand_out(self, what: str, n: int, seed: int, pool: Sequence, missing: str | None) -> Drawn:
        if n < 1:
            raise ValueError(f"{self.name}: n={n} must be at least 1")
        items = tuple(pool[:n])
        note = None
        if len(items) < n:
            note = missing or f"capped at {len(items)}: the {self.name} suite holds {len(items)} {what} item(s), {n} asked"
            if self.left_out() and "left_out" not in note:
                note += f" ({len(self.left_out())} item(s) left out, listed in left_out)"
        drawn = Drawn(items, note)
        self._keep(f"{what}@seed={seed}", {"n": len(items), "content_hash": drawn.content_hash if items else None})
        if note:
            self._keep_note(what, n, note)
        return drawn

    def _keep(self, key: str, entry: dict) -> None:
        """Several claims ask for the same kind and seed: keep the largest draw (a smaller one is
        its prefix), so what is kept does not depend on the order the claims ran in."""
        if entry["n"] >= self._handed.get(key, {}).get("n", 0):
            self._handed[key] = dict(entry)

    def _keep_note(self, what: str, n: int, note: str) -> None:
        """The note of the largest request of ``what`` (ties: the first in sort order), whatever the order."""
        known = self._notes.get(what)
        if known is None or n > known[0] or (n == known[0] and note < known[1]):
            self._notes[what] = (n, note)

    def draws(self) -> dict:
        """What this process handed out, JSON-ready: what an xdist worker sends the controller, which
        :meth:`absorb` s it, so the report's ``probes`` section of ``-n N`` equals a serial run's."""
        return {"handed": self._handed, "notes": {w: list(v) for w, v in self._notes.items()},
                "left_out": self.left_out()}

    def absorb(self, draws: dict) -> None:
        """Merge another process's :meth:`draws` (the largest draw per kind and seed, the note of
        the largest request, the union of the items left out): order-independent, so merging the
        workers' draws gives what one process drawing everything describes."""
        for key, entry in draws.get("handed", {}).items():
            self._keep(key, entry)
        for what, (n, note) in draws.get("notes", {}).items():
            self._keep_note(what, int(n), note)
        self._absorbed_left_out.update(draws.get("left_out", ()))

    def ability_items(self, kind, n, *, seed):
        return self._hand_out(kind, n, seed, *self._ability_pool(kind, n, seed))

    def swap_pairs(self, task, n, *, seed):
        return self._hand_out(f"swap:{task}", n, seed, *self._swap_pool(task, n, seed))

    def describe(self) -> dict:
        """``name``, ``source``, ``answer_format``, ``max_new_tokens``, ``items`` (handed out per
        kind/task and seed), ``content_hash`` (of everything handed out), ``notes``, ``left_out``."""
        digest = hashlib.sha256(json.dumps(self._handed, sort_keys=True).encode()).hexdigest()
        return {"name": self.name, "source": self.source(), "answer_format": self.answer_format,
                "max_new_tokens": self.max_new_tokens,
                "items": {k: v["n"] for k, v in sorted(self._handed.items())},
                "content_hash": digest, "notes": {w: note for w, (_, note) in sorted(self._notes.items())},
                "left_out": natural_sorted(set(self.left_out()) | self._absorbed_left_out)}


def natural_sorted(texts) -> list[str]:
    """``texts`` sorted with their numbers compared as numbers (``a.jsonl:9`` before ``a.jsonl:10``)."""
    import re

    return sorted(texts, key=lambda t: [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", t)])


def parse_options(spec_arg: str | None, allowed: dict[str, type], *, suite: str) -> dict:
    """``key=value,key=value`` options of a suite spec (``synthetic:preset=small,max_new_tokens=64``).

    Raises:
        UsageError: an unknown key, or a value of the wrong type.
    """
    out: dict = {}
    for part in filter(None, (spec_arg or "").split(",")):
        key, eq, value = part.partition("=")
        if not eq or key not in allowed:
            raise UsageError(f"--probes {suite}:{spec_arg}: option {part!r} is not one of "
                             f"{', '.join(k + '=...' for k in allowed)}")
        try:
            out[key] = allowed[key](value)
        except ValueError:
            raise UsageError(f"--probes {suite}:{spec_arg}: {key}={value!r} is not a valid "
                             f"{allowed[key].__name__}") from None
    return out


def resolved(path: str | Path) -> str:
    """A path as the report shows it (absolute, ``~`` expanded)."""
    return str(Path(path).expanduser().resolve())


__all__ = ["AbilityItem", "Drawn", "RecordingSuite", "generation_settings", "items_hash", "parse_options", "ProbeSuite", "SwapPair", "open_suite", "register_suite", "suite_names"]
