"""Configuration: the rootdir fix before conftests load, and ``pytest_configure``, which parses the
options into the :class:`~vlmdiag.plugin.session.RunState` and registers the report writers."""

from __future__ import annotations

from functools import partial

import pytest

from vlmdiag import invocation
from vlmdiag.plugin.extend import extend
from vlmdiag.plugin.options import option_value
from vlmdiag.plugin.reports import ReportWriter, SummaryWriter
from vlmdiag.plugin.session import STATE, RunState, usage_errors
from vlmdiag.plugin.workers import configure_worker, xdist_controller


@pytest.hookimpl(tryfirst=True)  # before pytest's own implementation, which loads conftests
def pytest_load_initial_conftests(early_config: pytest.Config, args: list[str]) -> None:
    invocation.fix_rootdir(early_config, args)
    invocation.keep_pytest_cache_out_of_checkpoints(early_config)


@pytest.hookimpl(tryfirst=True)  # before anything may initialise CUDA in a worker
def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        configure_worker(config, workerinput)
    config.addinivalue_line("markers", "slow: takes minutes (the full organism build, benchmarks)")
    config.addinivalue_line("markers", "claim(id): the vlmdiag claim a diagnostic checks")
    from vlmdiag.regions import parse_regions

    with usage_errors():
        recipes = invocation.run_recipes(partial(option_value, config))
        regions = parse_regions(option_value(config, "regions") or "paper")
    if recipes and not config.getoption("help", False):
        extend(config)  # vlmdiag's hooks: the organism, conftest files and plugins register
    with usage_errors():
        thresholds = invocation.thresholds_path(option_value(config, "thresholds"), config.rootpath)
        if recipes and not config.getoption("help", False):
            invocation.check_local_checkpoints(recipes)
            collect = invocation.collection_args(config)
            if collect is not None:
                config.args[:] = collect
                # Else pytest's header names the testpaths this run does not collect.
                config.args_source = pytest.Config.ArgsSource.ARGS
    report_json = option_value(config, "report_json")
    if report_json:
        from vlmdiag.report.safety import check_report_path

        with usage_errors():
            report_json = check_report_path(report_json)
    config.stash[STATE] = state = RunState(
        recipes={r.name: r for r in recipes}, regions=regions, thresholds_path=thresholds,
        report_json=report_json, report_only=bool(option_value(config, "report_only")),
        allow_pickle=bool(option_value(config, "allow_pickle")),
        trust_remote_code=bool(option_value(config, "trust_remote_code")),
        use_cache=not option_value(config, "no_cache"), probes=option_value(config, "probes"),
        log_samples=option_value(config, "log_samples"), sequential=bool(option_value(config, "sequential")))
    if state.probes and state.recipes and not config.getoption("help", False):
        with usage_errors():  # an unknown suite or a malformed manifest: a usage error now
            state.probe_suite  # noqa: B018
    from vlmdiag.report.options import ReportOptions

    with usage_errors():
        state.reports = ReportOptions.from_config(partial(option_value, config))
    config.pluginmanager.register(ReportWriter(state, config), "vlmdiag-report-writer")
    config.pluginmanager.register(SummaryWriter(state, config), "vlmdiag-summary-writer")
    if xdist_controller(config):
        if state.recipes and not config.getoption("help", False):
            # Workers collect, the controller does not: check the inputs here, once, rather
            # than as one crash per worker.
            with usage_errors():
                state.validate_inputs()
