"""Collection: the header line, one ``recipe`` parameter per recipe, and the input checks once the
selected claims are known."""

from __future__ import annotations

import pytest

from vlmdiag.errors import VlmdiagError, printable
from vlmdiag.plugin.session import STATE


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(STATE, None)
    if state is None or not state.recipes:
        return []
    from vlmdiag.packaged import diagnostics_dir

    return [f"vlmdiag: thresholds {state.thresholds_path}, diagnostics {diagnostics_dir()}"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "recipe" in metafunc.fixturenames:
        names = list(metafunc.config.stash[STATE].recipes)
        metafunc.parametrize("recipe", names, ids=names)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    diagnostics = [item for item in items if "diagnose" in getattr(item, "fixturenames", ())]
    state = config.stash[STATE]
    if not diagnostics:
        return
    worker = getattr(config, "workerinput", None) is not None
    if not state.recipes:
        from vlmdiag.options import EXAMPLE

        message = f"the vlmdiag diagnostics need checkpoints: {EXAMPLE}"
        if worker:  # the controller reports it once (pytest_testnodedown), not each worker
            config.workeroutput["vlmdiag_usage_error"] = message
            items[:] = []
            return
        raise pytest.UsageError(message)
    state.selected = {m.args[0] for item in diagnostics for m in item.iter_markers("claim") if m.args}
    if not worker:  # under xdist the controller checked them (pytest_configure)
        try:
            state.validate_inputs()
        except VlmdiagError as error:
            raise pytest.UsageError(printable(error)) from None
