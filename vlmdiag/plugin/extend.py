"""vlmdiag's own hooks (:mod:`vlmdiag.hookspec`): added to pytest's hook set, called once a run
has checkpoints (conftest files and plugins add claims, measurements, probe suites, checkpoint
resolvers and families; the model organism registers through them too), and undone at the end."""

from __future__ import annotations

import importlib

import pytest

from vlmdiag.errors import VlmdiagError, printable

_FORGET = pytest.StashKey[object]()  # undoes what the vlmdiag hooks registered


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from vlmdiag import hookspec

    pluginmanager.add_hookspecs(hookspec)


def extend(config: pytest.Config) -> None:
    """Register the built-in plugins (the model organism), call vlmdiag's hooks and check every
    claim against its measurement's plan.

    Raises:
        pytest.UsageError: a registration clashes, or a claim disagrees with its plan.
    """
    from vlmdiag.extensions import BUILTIN_PLUGINS, apply

    for name in BUILTIN_PLUGINS:
        if not config.pluginmanager.has_plugin(name):
            config.pluginmanager.register(importlib.import_module(name), name)
    try:
        config.stash[_FORGET] = apply(config.hook)
        from vlmdiag.claims import all_claims
        from vlmdiag.runner import check_claims

        check_claims(all_claims())
    except (VlmdiagError, ValueError) as error:
        raise pytest.UsageError(printable(error)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    forget = config.stash.get(_FORGET, None)
    if forget is not None:
        forget()
