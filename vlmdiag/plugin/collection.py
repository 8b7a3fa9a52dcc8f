"""Collection: the header line, one ``recipe`` parameter per recipe, and the input checks once the
selected claims are known."""

from __future__ import annotations

import pytest

from vlmdiag.errors import VlmdiagError
from vlmdiag.plugin.session import STATE, usage_errors


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(STATE, None)
    if state is None or not state.recipes:
        return []
    from vlmdiag.packaged import diagnostics_dir

    from vlmdiag.plugin.probes import header_line

    lines = [f"vlmdiag: thresholds {state.thresholds_path}, diagnostics {diagnostics_dir()}"]
    try:
        lines.append(f"vlmdiag {header_line(state.probe_suite)}")
    except VlmdiagError:  # reported as a usage error by pytest_configure
        pass
    return lines


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
        with usage_errors():
            state.validate_inputs()
