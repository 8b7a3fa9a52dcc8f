"""Measurement plans: how to make each named measurement, registered by name.

A plan lives in its own module and declares, with :func:`register_plan`, its name, the checkpoint
roles it always reads, the settings it takes (a pydantic model) and a ``build(runner, settings)``
function that returns a :class:`Plan` for one recipe. The :class:`~vlmdiag.runner.runner.Runner`
looks plans up here by the name a claim gives as its ``measurement``; adding a measurement is
adding a module (or a plugin's ``pytest_vlmdiag_add_measurements`` hook), never editing a
central class.

:func:`check_claim` compares a claim's thresholds class with its plan's settings, so a claim that
would ask its measurement for settings the plan does not take (or not give one it needs) is
refused when claims are loaded, not when the measurement runs.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vlmdiag.errors import UsageError
from vlmdiag.regions import Regions


class PlanError(UsageError):
    """A plan is registered twice, is unknown, or disagrees with a claim that reads it."""


@dataclass(frozen=True)
class Plan:
    """How to make one measurement for one recipe: the checkpoint roles it reads (their
    identities are part of the cache key), ``compute()``, ``device()`` (the device description in
    the key), the probe items it asks (part of the key, by content), ``also_in``, measurements
    whose cached value holds this one (spectra hold norms), and ``after(value)``, called with the
    value once it is made or read from the cache (the swap plan writes its ``--log-samples``
    records there, so a cached run logs them too)."""

    roles: tuple[str, ...]
    compute: Callable[[], Any]
    device: Callable[[], str]
    probes: Any = None
    also_in: tuple[str, ...] = ()
    after: Callable[[Any], None] | None = None


@dataclass(frozen=True)
class PlanSpec:
    """A registered measurement.

    Attributes:
        name: what claims name as their ``measurement``.
        roles: the checkpoint roles it always reads (``base``, ``rl``; a plan may read more when
            the recipe has them, such as ``origin``).
        settings: the pydantic model of its settings (None: it takes none).
        build: ``build(runner, settings) -> Plan``; ``settings`` is an instance of ``settings``.
        subsumed_by: a measurement whose value holds this one; when the run will make that one
            anyway (``Runner.wanted``), this one is read from it instead of measured on its own.
        module: where it was registered (for messages).
    """

    name: str
    roles: tuple[str, ...]
    settings: type[BaseModel] | None
    build: Callable[..., Plan]
    subsumed_by: str | None = None
    module: str = ""

    def setting_names(self) -> tuple[set[str], set[str]]:
        """``(taken, required)``: every setting the plan takes, and those without a default."""
        if self.settings is None:
            return set(), set()
        fields = self.settings.model_fields
        return set(fields), {name for name, field in fields.items() if field.is_required()}


class ProbeSettings(BaseModel):
    """Settings of a measurement that runs the models on probe items."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    n_items: int = Field(ge=1, description="items per probe set")
    max_new_tokens: int = Field(ge=1, description="greedy decoding budget per answer")
    seed: int = Field(description="seed of the probe suite's items")


class SwapSettings(ProbeSettings):
    mode: Literal["from", "only"] = Field("from", description="swap at every layer >= L, or at L alone")


class RegionSettings(ProbeSettings):
    """Probe settings of a measurement made at the run's region cuts (splices, frozen runs)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    regions: Regions


_PLANS: dict[str, PlanSpec] = {}
_loaded = False


def register_plan(name: str, *, roles: tuple[str, ...], settings: type[BaseModel] | None = None,
                  subsumed_by: str | None = None):
    """Register the decorated ``build(runner, settings) -> Plan`` as measurement ``name``.

    Raises:
        PlanError: ``name`` is already registered by another function.
    """

    def register(build: Callable[..., Plan]) -> Callable[..., Plan]:
        module = getattr(build, "__module__", "?")
        known = _PLANS.get(name)
        if known is not None and (known.module, known.build.__qualname__) != (module, build.__qualname__):
            raise PlanError(f"measurement plan {name!r} is registered twice ({known.module} and {module})")
        _PLANS[name] = PlanSpec(name, tuple(roles), settings, build, subsumed_by, module)
        return build

    return register


def unregister_plan(name: str) -> None:
    """Forget plan ``name`` (no error when there is none)."""
    _PLANS.pop(name, None)


def plans() -> dict[str, PlanSpec]:
    """Every registered plan, after importing the built-in ones
    (:mod:`vlmdiag.runner.measurements`)."""
    global _loaded
    if not _loaded:
        import vlmdiag.runner.measurements as builtin

        for module in pkgutil.iter_modules(builtin.__path__):  # every module registers its plan
            importlib.import_module(f"{builtin.__name__}.{module.name}")
        _loaded = True
    return _PLANS


def get_plan(name: str) -> PlanSpec:
    """The plan registered as ``name``.

    Raises:
        PlanError: no plan of that name (the message lists those that are).
    """
    spec = plans().get(name)
    if spec is None:
        raise PlanError(f"no measurement plan {name!r}; registered: {', '.join(sorted(plans()))}")
    return spec


def check_claim(claim) -> None:
    """Refuse a claim whose thresholds class disagrees with the plan of its ``measurement``.

    The settings a claim gives its measurement are its thresholds class's
    ``MEASUREMENT_SETTINGS`` (``{setting: field}``) plus ``regions`` when the claim is measured at
    the cuts (``regions_in_measurement``); they must be settings the plan takes and cover every
    one it requires, and each field must exist in the thresholds class.

    Raises:
        PlanError: one line naming the claim, its thresholds class, the plan and what differs.
    """
    spec = plans().get(claim.measurement)
    if spec is None:
        raise PlanError(f"claim {claim.id!r} reads measurement {claim.measurement!r}, which no plan provides; "
                        f"registered: {', '.join(sorted(plans()))}")
    cls = claim.thresholds
    mapping = getattr(cls, "MEASUREMENT_SETTINGS", {})
    where = f"claim {claim.id!r} ({cls.__module__}.{cls.__qualname__}) and plan {spec.name!r} ({spec.module})"
    absent = sorted(field for field in mapping.values() if field not in cls.model_fields)
    if absent:
        raise PlanError(f"{where}: MEASUREMENT_SETTINGS names fields the thresholds class lacks: {', '.join(absent)}")
    supplied = set(mapping) | ({"regions"} if claim.regions_in_measurement else set())
    taken, required = spec.setting_names()
    extra, missing = sorted(supplied - taken), sorted(required - supplied)
    if extra or missing:
        problems = ([f"supplies {', '.join(extra)}, which the plan does not take"] if extra else []) + \
                   ([f"does not supply {', '.join(missing)}, which the plan requires"] if missing else [])
        raise PlanError(f"{where} disagree: the claim {' and '.join(problems)} (plan settings: "
                        f"{', '.join(sorted(taken)) or 'none'})")


def check_claims(claims) -> None:
    """:func:`check_claim` for every claim of ``claims`` (a mapping or iterable of claims)."""
    for claim in (claims.values() if isinstance(claims, dict) else claims):
        check_claim(claim)
