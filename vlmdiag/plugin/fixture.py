"""The ``diagnose`` fixture: runs a test's claim on a recipe and turns its verdict into the test's
outcome; the result travels to the report writer on the call-phase test report."""

from __future__ import annotations

import json

import pytest

from vlmdiag.errors import printable
from vlmdiag.plugin.session import STATE, RunState

RESULT_PROPERTY = "vlmdiag.result"
_RESULT = pytest.StashKey[str]()  # a test's result as JSON text, until its report is made


@pytest.fixture
def diagnose(request: pytest.FixtureRequest):
    """``diagnose(recipe)``: evaluate the test's ``@pytest.mark.claim(id)`` on a recipe, compare it
    with ``--baseline``, attach its metrics for ``--junitxml`` (suite properties under xunit2,
    test properties under xunit1/legacy), and turn the verdict into the test's outcome
    (:meth:`vlmdiag.report.options.ReportOptions.outcome`: fail, skip, xfail or pass)."""
    state: RunState = request.config.stash[STATE]

    marker = request.node.get_closest_marker("claim")
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{request.node.nodeid}: a diagnostic needs @pytest.mark.claim(\"CLAIM_ID\")")
    claim_id = marker.args[0]

    def run(recipe: str):
        from vlmdiag.claims import all_claims, run_claim
        from vlmdiag.report.document import _jsonable

        claims = all_claims()
        if claim_id not in claims:
            raise pytest.UsageError(f"unknown claim {claim_id!r}; known: {', '.join(sorted(claims))}")
        evidence = state.evidence(recipe)
        first = len(evidence.cache_log)
        rule = state.sequential_rule()
        if rule is None:
            result = run_claim(claims[claim_id], evidence, state.regions_of(recipe), state.thresholds.get(claim_id))
        else:  # --sequential: in rounds of probe items, until decided (vlmdiag.sequential)
            from vlmdiag.sequential import run_claim_sequential

            result = run_claim_sequential(claims[claim_id], evidence, state.regions_of(recipe),
                                          state.thresholds.get(claim_id), rule)
        data = _jsonable(result.as_dict())
        data["cache"] = cache_record(evidence.cache_log[first:], enabled=state.use_cache)
        state.reports.compare(data, state.thresholds)
        request.node.stash[_RESULT] = json.dumps(data, allow_nan=False)  # to the report writer, via the test report
        if request.config.getini("junit_family") in ("legacy", "xunit1"):
            # xunit2 (pytest's default) allows no per-test properties: those go to the suite's
            # properties instead (ReportWriter), and record_property would warn.
            request.node.user_properties.extend(
                [(f"vlmdiag.{k}", v) for k, v in state.reports.properties(data)]
                + [(RESULT_PROPERTY, request.node.stash[_RESULT])])
        action, message = state.reports.outcome(data, report_only=state.report_only) or (None, "")
        # printable: a reason quotes file and tensor names, which must not drive the terminal
        message = printable(message)
        if action == "fail":
            pytest.fail(message, pytrace=False)
        if action == "skip":
            pytest.skip(message)
        if action == "xfail":
            pytest.xfail(message)
        return result

    return run


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    if call.when == "call" and _RESULT in item.stash:
        report.vlmdiag_result = item.stash[_RESULT]
    return report


def cache_record(log: list[tuple[str, str]], *, enabled: bool) -> dict:
    """A claim's ``cache`` entry in the report: ``enabled`` (no ``--no-cache``), ``measurements``
    (``{name: "hit" | "miss" | "off"}``: read from the results cache, measured now and stored,
    measured now without caching) and ``from_cache`` (every measurement it read was a hit)."""
    measurements = dict(log)
    return {"enabled": enabled, "measurements": measurements,
            "from_cache": bool(measurements) and all(v == "hit" for v in measurements.values())}
