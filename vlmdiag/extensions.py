"""Calling vlmdiag's hooks (:mod:`vlmdiag.hookspec`) and undoing what they registered.

Under pytest the plugin calls :func:`apply` with ``config.hook`` at ``pytest_configure`` (every
conftest and plugin takes part) and the returned undo at ``pytest_unconfigure``. The command
line, which has no pytest session, calls :func:`load`: the built-in plugins (the model organism)
and the ``vlmdiag`` entry-point group, once per process.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pluggy

#: Modules that implement vlmdiag's hooks as built-in plugins.
BUILTIN_PLUGINS = ("vlmdiag.organism",)

_loaded = False


def apply(hook) -> Callable[[], None]:
    """Call every ``pytest_vlmdiag_add_*`` hook of ``hook`` (a pluggy hook relay) with its
    register function, in dependency order: resolvers, probe suites, families, measurements,
    claims. Returns a function that forgets what was newly registered.

    Raises:
        ValueError: a registration clashes with an existing one (same name, other object).
    """
    from vlmdiag.adapters import register_family, unregister_family
    from vlmdiag.checkpoints.resolve import _RESOLVERS, register_resolver, unregister_resolver
    from vlmdiag.claims.registry import CLAIMS, claim
    from vlmdiag.probes import suite
    from vlmdiag.runner.plans import plans, register_plan, unregister_plan

    undo: list[Callable[[], None]] = []

    def resolver(prefix, resolve):
        if prefix not in _RESOLVERS:
            undo.append(lambda: unregister_resolver(prefix))
        register_resolver(prefix, resolve)

    def probe_suite(name, factory):
        if name not in suite.suite_names():
            undo.append(lambda: suite._SUITES.pop(name, None))
        suite.register_suite(name, factory)

    def family(name, spec):
        undo.append(lambda: unregister_family(name))
        register_family(name, spec)

    def plan(name, **options):
        decorate = register_plan(name, **options)

        def register(build):
            if name not in plans():
                undo.append(lambda: unregister_plan(name))
            return decorate(build)

        return register

    def add_claim(id, **options):
        decorate = claim(id, **options)

        def register(judge):
            if id not in CLAIMS:
                undo.append(lambda: CLAIMS.pop(id, None))
            return decorate(judge)

        return register

    hook.pytest_vlmdiag_add_checkpoint_resolvers(register_resolver=resolver)
    hook.pytest_vlmdiag_add_probe_suites(register_suite=probe_suite)
    hook.pytest_vlmdiag_add_families(register_family=family)
    hook.pytest_vlmdiag_add_measurements(register_plan=plan)
    hook.pytest_vlmdiag_add_claims(claim=add_claim)

    def forget() -> None:
        for step in reversed(undo):
            step()
        undo.clear()

    return forget


class _Manager(pluggy.PluginManager):
    """Takes a plugin's ``pytest_vlmdiag_*`` functions as hook implementations without a marker,
    as pytest does for ``pytest_*``."""

    def parse_hookimpl_opts(self, plugin, name):
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("pytest_vlmdiag_") and callable(getattr(plugin, name, None)):
            opts = {"wrapper": False, "hookwrapper": False, "optionalhook": False, "tryfirst": False,
                    "trylast": False, "specname": None}
        return opts


def load() -> None:
    """Outside pytest: register the built-in plugins' and the ``vlmdiag`` entry points'
    extensions (once per process)."""
    global _loaded
    if _loaded:
        return
    import vlmdiag.hookspec

    manager = _Manager("pytest")
    manager.add_hookspecs(vlmdiag.hookspec)
    for name in BUILTIN_PLUGINS:
        manager.register(importlib.import_module(name), name)
    manager.load_setuptools_entrypoints("vlmdiag")
    apply(manager.hook)
    _loaded = True
