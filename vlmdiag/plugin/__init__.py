"""The pytest plugin, registered through the ``pytest11`` entry point (or ``-p vlmdiag.plugin``):
this package exposes every hook and the ``diagnose`` fixture; each concern has its own module
(the shape of pytest-xdist's ``plugin`` / ``dsession`` / ``scheduler``):

========================  ==================================================================
``options``               the options and ini keys, and how one is read
``session``               the run state (``config.stash[STATE]``) and the input checks
``configure``             the rootdir fix, ``pytest_configure``
``extend``                vlmdiag's hooks (``vlmdiag.hookspec``): claims, plans, suites, ... from plugins
``scheduler``             ``-n N``: whole (diagnostics file, recipe) units per xdist worker
``workers``               xdist workers: GPU pinning, CPU threads, a worker's usage error
``progress``              the progress display of the long measurement steps
``collection``            the header, the ``recipe`` parameter, checks once claims are selected
``fixture``               the ``diagnose`` fixture
``reports``               the JSON report, the Markdown summary, the terminal summary
========================  ==================================================================

Results travel on each call-phase test report (``report.vlmdiag_result``, JSON text, serialised
by xdist with the report), so the process that writes the report sees every result whether tests
ran in it or in xdist workers.
"""

from __future__ import annotations

from vlmdiag.plugin.collection import pytest_collection_modifyitems, pytest_generate_tests, pytest_report_header
from vlmdiag.plugin.configure import pytest_configure, pytest_load_initial_conftests
from vlmdiag.plugin.extend import pytest_addhooks, pytest_unconfigure
from vlmdiag.plugin.fixture import RESULT_PROPERTY, cache_record, diagnose, pytest_runtest_makereport
from vlmdiag.plugin.options import pytest_addoption
from vlmdiag.plugin.progress import pytest_sessionstart
from vlmdiag.plugin.reports import ReportWriter, SummaryWriter, pytest_terminal_summary
from vlmdiag.plugin.scheduler import diagnostic_scope, pytest_xdist_make_scheduler
from vlmdiag.plugin.session import STATE, RunState
from vlmdiag.plugin.workers import (pytest_configure_node, pytest_testnodedown, worker_cpu_threads,
                                    worker_cuda_visible_devices)

__all__ = [
    "RESULT_PROPERTY", "STATE", "ReportWriter", "RunState", "SummaryWriter", "cache_record", "diagnose",
    "diagnostic_scope", "worker_cpu_threads", "worker_cuda_visible_devices",
    # hooks
    "pytest_addhooks", "pytest_addoption", "pytest_collection_modifyitems", "pytest_configure", "pytest_configure_node",
    "pytest_generate_tests", "pytest_load_initial_conftests", "pytest_report_header", "pytest_runtest_makereport",
    "pytest_sessionstart", "pytest_terminal_summary", "pytest_testnodedown", "pytest_unconfigure", "pytest_xdist_make_scheduler",
]
