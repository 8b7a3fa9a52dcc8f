"""vlmdiag's hooks: how a ``conftest.py`` or an installed pytest plugin adds claims, measurements,
probe suites, checkpoint resolvers and architecture families (as pytest-xdist's ``newhooks.py``;
registered by the vlmdiag plugin's ``pytest_addhooks``).

Each hook is called once per run, at ``pytest_configure`` (so a rootdir ``conftest.py`` or a
plugin takes part; a conftest deeper in the tree is loaded too late), with a ``register``
function as its argument; what a hook registers is forgotten again at the end of the run
(``pytest_unconfigure``). The built-in model organism plugs in through these same hooks
(:mod:`vlmdiag.organism`: its ``organism:`` resolver and ``organism`` probe suite).

Outside pytest (the ``vlmdiag`` command line), :func:`vlmdiag.extensions.load` calls them on the
built-in plugins and the ``vlmdiag`` entry points. Examples: README, "Extending vlmdiag".
"""

from __future__ import annotations

import pytest


@pytest.hookspec()
def pytest_vlmdiag_add_claims(claim) -> None:
    """Add claims. ``claim`` is :func:`vlmdiag.claims.registry.claim`, the decorator the built-in
    claims use: ``claim(id, statement=..., source=..., measurement=..., thresholds=...,
    needs=(...))`` applied to a verdict rule ``judge(value, regions, thresholds) -> Outcome``.
    The claim runs where a test marked ``@pytest.mark.claim(id)`` calls the ``diagnose``
    fixture, and needs an entry in the thresholds file (its ``gate`` decides whether a
    ``not_reproduced`` verdict fails the run)."""


@pytest.hookspec()
def pytest_vlmdiag_add_measurements(register_plan) -> None:
    """Add measurements. ``register_plan`` is :func:`vlmdiag.runner.plans.register_plan`:
    ``register_plan(name, roles=(...), settings=Model)`` applied to ``build(runner, settings) ->
    Plan``. A claim whose thresholds disagree with its plan's settings is a usage error."""


@pytest.hookspec()
def pytest_vlmdiag_add_probe_suites(register_suite) -> None:
    """Add probe suites. ``register_suite`` is :func:`vlmdiag.probes.suite.register_suite`:
    ``register_suite(name, factory)``, where ``factory(arg)`` builds a
    :class:`~vlmdiag.probes.suite.ProbeSuite` for ``--probes NAME[:ARG]``."""


@pytest.hookspec()
def pytest_vlmdiag_add_checkpoint_resolvers(register_resolver) -> None:
    """Add checkpoint spec prefixes. ``register_resolver`` is
    :func:`vlmdiag.checkpoints.resolve.register_resolver`: ``register_resolver(prefix, resolve)``,
    where ``resolve(spec)`` returns the local folder of ``PREFIX:REST``."""


@pytest.hookspec()
def pytest_vlmdiag_add_families(register_family) -> None:
    """Add architecture families. ``register_family`` is :func:`vlmdiag.adapters.register_family`:
    ``register_family(name, spec)`` with ``spec`` shaped like an entry of ``families.yaml``
    (``model_types``, ``architectures``, ``box_coordinates``, ``modules``, ``config``,
    ``checkpoint_prefixes``, optionally ``processor_images``)."""
