"""The pytest plugin: options, the run state, the ``recipe`` and ``diagnose`` fixtures, and the
reports. Registered through the ``pytest11`` entry point.

Results travel in each test report's ``user_properties`` (``vlmdiag.result``), so the process
that writes the report sees every result whether tests ran in it or in xdist workers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vlmdiag.errors import VlmdiagError

RESULT_PROPERTY = "vlmdiag.result"

# Help-text house style: say what the value is, then an example; the default comes last.


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vlmdiag", "vlmdiag: which of the paper's findings your RL recipe reproduces")
    options = [
        ("--base", "base", "CKPT", "the checkpoint RL started from (the paper's IN): a folder, a hub id, "
                                    "or organism:in"),
        ("--rl", "rl", "CKPT", "the RL result, e.g. organism:rl"),
        ("--origin", "origin", "CKPT", "the checkpoint before the base's SFT (the paper's Base), for the "
                                        "claims that compare IN with RL updates, e.g. organism:base"),
        ("--regions", "regions", "SPEC", "Early/Mid/Late cuts of the LLM decoder: paper (10/9/9 of 28), "
                                          "thirds (cuts at L//3, 2L//3) or A,B. Default: paper"),
        ("--thresholds", "thresholds", "PATH", "verdict thresholds file. Default: thresholds.yaml in the "
                                               "rootdir"),
        ("--report-json", "report_json", "PATH", "write the versioned JSON report here (atomically), with "
                                                 "per-layer plots in PATH's folder"),
    ]
    for flag, dest, metavar, help_text in options:
        group.addoption(flag, dest=f"vlmdiag_{dest}", metavar=metavar, default=None, help=help_text)
        parser.addini(f"vlmdiag_{dest}", help_text)
    group.addoption("--recipe", dest="vlmdiag_recipe", action="append", default=[], metavar="NAME=BASE,RL[,ORIGIN]",
                    help="one more recipe (repeatable); the report becomes a claim x recipe matrix")
    parser.addini("vlmdiag_recipe", "recipes, one NAME=BASE,RL[,ORIGIN] per line", type="linelist")
    group.addoption("--rl-frozen", dest="vlmdiag_rl_frozen", action="append", default=[], metavar="REGION=CKPT",
                    help="an RL run trained with REGION frozen (repeatable), for freezing.late_necessary")
    parser.addini("vlmdiag_rl_frozen", "RL runs with a region frozen, one REGION=CKPT per line", type="linelist")
    for flag, dest, help_text in (
            ("--report-only", "report_only", "report verdicts but fail no test"),
            ("--allow-pickle", "allow_pickle", "load pickle (.bin) weights; pickle can run code: only for "
                                               "checkpoints you trust"),
            ("--trust-remote-code", "trust_remote_code", "let transformers run code shipped with a checkpoint")):
        group.addoption(flag, dest=f"vlmdiag_{dest}", action="store_true", default=False, help=help_text)
        parser.addini(f"vlmdiag_{dest}", help_text, type="bool", default=False)


@dataclass
class RunState:
    """Everything one pytest run knows about vlmdiag (kept in ``config.stash``)."""

    recipes: dict
    regions: str
    thresholds_path: Path
    report_json: Path | None
    report_only: bool
    allow_pickle: bool
    trust_remote_code: bool
    results: list[dict] = field(default_factory=list)
    selected: set[str] = field(default_factory=set)
    _thresholds: object = None
    _evidence: dict = field(default_factory=dict)
    _checkpoints: object = None

    @property
    def thresholds(self):
        if self._thresholds is None:
            from vlmdiag.claims import load_thresholds

            self._thresholds = load_thresholds(self.thresholds_path)
        return self._thresholds

    @property
    def checkpoints(self):
        if self._checkpoints is None:
            from vlmdiag.claims import CheckpointCache

            self._checkpoints = CheckpointCache(allow_pickle=self.allow_pickle)
        return self._checkpoints

    def evidence(self, recipe: str):
        if recipe not in self._evidence:
            from vlmdiag.claims import Evidence, all_claims

            claims = all_claims()
            spectral = any(claims[c].measurement == "weight_spectra" for c in self.selected if c in claims)
            self._evidence[recipe] = Evidence(self.recipes[recipe], self.checkpoints, wants_spectra=spectral)
        return self._evidence[recipe]

    def validate_inputs(self) -> None:
        """Open every checkpoint, check each recipe's are comparable and its regions fit, and
        read the thresholds: bad input fails here, before any claim runs."""
        from vlmdiag.checkpoints import check_compatible
        from vlmdiag.regions import regions_for

        self.thresholds  # noqa: B018  (validates the file)
        for recipe in self.recipes.values():
            opened = [self.checkpoints.get(spec) for spec in recipe.specs().values()]
            check_compatible(*opened)
            if self.regions != "localized":
                regions_for(self.regions, opened[0].num_llm_layers)

    def checkpoint_table(self) -> dict:
        table = {}
        for name, recipe in self.recipes.items():
            table[name] = {}
            for role, spec in recipe.specs().items():
                entry = {"spec": spec}
                try:
                    ckpt = self.checkpoints.get(spec)
                    entry.update(path=str(ckpt.path), fingerprint=ckpt.fingerprint)
                except VlmdiagError as error:
                    entry["error"] = str(error)
                table[name][role] = entry
        return table


STATE = pytest.StashKey[RunState]()


def _value(config: pytest.Config, dest: str):
    value = config.getoption(f"vlmdiag_{dest}")
    if value in (None, [], False):
        value = config.getini(f"vlmdiag_{dest}")
    return value or None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes minutes (the full organism build, benchmarks)")
    config.addinivalue_line("markers", "claim(id): the vlmdiag claim a diagnostic checks")
    from vlmdiag.options import parse_recipe, parse_regions, parse_rl_frozen, recipes_from

    try:
        recipes = recipes_from(_value(config, "base"), _value(config, "rl"), _value(config, "origin"),
                               [parse_recipe(r) for r in _value(config, "recipe") or []],
                               [parse_rl_frozen(r) for r in _value(config, "rl_frozen") or []])
        regions = parse_regions(_value(config, "regions") or "paper")
    except VlmdiagError as error:
        raise pytest.UsageError(str(error)) from None
    if config.inipath is None and (config.invocation_params.dir / "pyproject.toml").is_file():
        # pytest picks its rootdir before plugins load, so in `--base /some/folder` the folder reads
        # as a test path, and pytest misses this folder's configuration (testpaths, markers).
        raise pytest.UsageError(
            f"pytest took its rootdir ({config.rootpath}) from a path-valued option and missed "
            f"{config.invocation_params.dir / 'pyproject.toml'}; write path options as --base=PATH "
            f"(with '='), or add --rootdir .")
    thresholds = Path(_value(config, "thresholds") or config.rootpath / "thresholds.yaml")
    report_json = _value(config, "report_json")
    if report_json:
        report_json = Path(report_json).absolute()
        if not report_json.parent.is_dir():
            raise pytest.UsageError(f"--report-json {report_json}: folder {report_json.parent} does not exist")
        if not os.access(report_json.parent, os.W_OK):
            raise pytest.UsageError(f"--report-json {report_json}: folder {report_json.parent} is not writable")
    config.stash[STATE] = state = RunState(
        recipes={r.name: r for r in recipes}, regions=regions, thresholds_path=thresholds,
        report_json=report_json, report_only=bool(_value(config, "report_only")),
        allow_pickle=bool(_value(config, "allow_pickle")),
        trust_remote_code=bool(_value(config, "trust_remote_code")))
    config.pluginmanager.register(ReportWriter(state, config), "vlmdiag-report-writer")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "recipe" in metafunc.fixturenames:
        names = list(metafunc.config.stash[STATE].recipes)
        metafunc.parametrize("recipe", names, ids=names)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    diagnostics = [item for item in items if "diagnose" in getattr(item, "fixturenames", ())]
    state = config.stash[STATE]
    if not diagnostics:
        return
    if not state.recipes:
        from vlmdiag.options import EXAMPLE

        raise pytest.UsageError(f"the vlmdiag diagnostics need checkpoints: {EXAMPLE}")
    state.selected = {m.args[0] for item in diagnostics for m in item.iter_markers("claim") if m.args}
    try:
        state.validate_inputs()
    except VlmdiagError as error:
        raise pytest.UsageError(str(error)) from None


@pytest.fixture
def diagnose(request: pytest.FixtureRequest, record_property):
    """``diagnose(recipe)``: evaluate the test's ``@pytest.mark.claim(id)`` on a recipe, attach its metrics to the test
    (``record_property``, so ``--junitxml`` carries them), and turn the verdict into the test's
    outcome: a gated ``not_reproduced`` or an ``error`` fails (never under ``--report-only``),
    ``skipped`` skips with the reason, the rest pass."""
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
        result = run_claim(claims[claim_id], state.evidence(recipe), state.regions, state.thresholds.get(claim_id))
        data = _jsonable(result.as_dict())
        record_property("vlmdiag.verdict", result.verdict)
        record_property("vlmdiag.reason", result.reason)
        for key in ("statistic", "threshold", "robust_to_cut"):
            record_property(f"vlmdiag.{key}", data["metrics"].get(key))
        record_property(RESULT_PROPERTY, json.dumps(data, allow_nan=False))
        message = f"{claim_id} [{recipe}]: {result.verdict}: {result.reason}"
        if result.verdict == "skipped":
            pytest.skip(message)
        if not state.report_only and (result.verdict == "error" or
                                      (result.verdict == "not_reproduced" and result.gate)):
            pytest.fail(message, pytrace=False)
        return result

    return run


class ReportWriter:
    """Collects every result from the test reports and writes the JSON report and plots.

    Registered in ``pytest_configure``, so it holds the run state without a module global."""

    def __init__(self, state: RunState, config: pytest.Config):
        self.state, self.config = state, config

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":  # setup/teardown reports carry the same user_properties
            return
        for key, value in report.user_properties:
            if key == RESULT_PROPERTY:
                self.state.results.append(json.loads(value))

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        state = self.state
        if getattr(self.config, "workerinput", None) is not None or not state.report_json:
            return
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return
        if not state.results and not state.selected:
            return
        from vlmdiag.report.document import build_report, dumps, write_atomic
        from vlmdiag.report.plots import write_plots

        report = build_report(state.results, checkpoints=state.checkpoint_table(), regions=state.regions,
                              thresholds=str(state.thresholds_path))
        write_atomic(state.report_json, dumps(report))
        write_plots(report, state.report_json.parent / f"{state.report_json.stem}_plots")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or not state.results:
        return
    from vlmdiag.report.terminal import render

    terminalreporter.section("vlmdiag")
    report = {"claims": state.results, "regions": state.regions}
    terminalreporter.write(render(report, width=terminalreporter._tw.fullwidth, color=terminalreporter.hasmarkup))
    if state.report_json:
        terminalreporter.write_line(f"report: {state.report_json}")
