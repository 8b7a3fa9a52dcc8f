"""The pytest plugin: options, the run state, the ``recipe`` and ``diagnose`` fixtures, and the
reports. Registered through the ``pytest11`` entry point.

Results travel on each call-phase test report (``report.vlmdiag_result``, JSON text, serialised
by xdist with the report), so the process that writes the report sees every result whether tests
ran in it or in xdist workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest

from vlmdiag import invocation
from vlmdiag.errors import VlmdiagError, printable

RESULT_PROPERTY = "vlmdiag.result"
_RESULT = pytest.StashKey[str]()  # a test's result as JSON text, until its report is made

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
                                          "thirds (cuts at L//3, 2L//3), A,B, or localized (from the base "
                                          "checkpoint's swap and skip curves). Default: paper"),
        ("--thresholds", "thresholds", "PATH", "verdict thresholds file. Default: thresholds.yaml in the "
                                               "rootdir, else vlmdiag's packaged one"),
        ("--report-json", "report_json", "PATH", "write the versioned JSON report here (atomically), with "
                                                 "per-layer plots in PATH's folder"),
        ("--baseline", "baseline", "PATH", "an earlier JSON report to compare with, per claim and recipe: "
                                           "verdict changes, the statistic against its interval, per-layer "
                                           "curves (tolerances: baseline in thresholds.yaml)"),
        ("--report-md", "report_md", "PATH", "write a Markdown summary here (claims x recipes); it is also "
                                             "appended to $GITHUB_STEP_SUMMARY when that is set"),
    ]
    for flag, dest, metavar, help_text in options:
        group.addoption(flag, dest=f"vlmdiag_{dest}", metavar=metavar, default=None, help=help_text)
        parser.addini(f"vlmdiag_{dest}", help_text)
    group.addoption("--recipe", dest="vlmdiag_recipe", action="append", default=[], metavar="NAME=BASE,RL[,ORIGIN]",
                    help="one more recipe (repeatable); the report becomes a claim x recipe matrix")
    parser.addini("vlmdiag_recipe", "recipes, one NAME=BASE,RL[,ORIGIN] per line", type="linelist")
    group.addoption("--rl-frozen", dest="vlmdiag_rl_frozen", action="append", default=[], metavar="[NAME:]REGION=CKPT",
                    help="an RL run trained with REGION frozen (repeatable), for freezing.late_necessary; NAME: the --recipe "
                         "it belongs to (default: the --base/--rl recipe, or the only --recipe)")
    parser.addini("vlmdiag_rl_frozen", "RL runs with a region frozen, one [NAME:]REGION=CKPT per line", type="linelist")
    for flag, dest, help_text in (
            ("--report-only", "report_only", "report verdicts but fail no test (except regressions under "
                                             "--fail-on-regression)"),
            ("--fail-on-regression", "fail_on_regression", "with --baseline: a claim whose verdict got worse, or "
                                                           "whose statistic moved against it, fails its test, "
                                                           "gated or not"),
            ("--require-gated", "require_gated", "a gated claim that is skipped (an input missing) fails its test"),
            ("--allow-pickle", "allow_pickle", "load pickle (.bin) weights; pickle can run code: only for "
                                               "checkpoints you trust"),
            ("--trust-remote-code", "trust_remote_code", "let transformers run code shipped with a checkpoint"),
            ("--no-cache", "no_cache", "measure everything again: neither read nor write the results cache "
                                       "($VLMDIAG_CACHE_DIR or ~/.cache/vlmdiag, under results/)")):
        group.addoption(flag, dest=f"vlmdiag_{dest}", action="store_true", default=False, help=help_text)
        parser.addini(f"vlmdiag_{dest}", help_text, type="bool", default=False)


def _report_options():
    """A :class:`vlmdiag.report.options.ReportOptions` without options (imported when needed)."""
    from vlmdiag.report.options import ReportOptions

    return ReportOptions()


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
    use_cache: bool = True
    reports: object = field(default_factory=_report_options)  # --baseline, --report-md, ...
    progress: object = None  # a vlmdiag.report.progress.StepProgress, set in pytest_configure
    usage_error: str | None = None  # an xdist worker's usage error, reported once by the controller
    current_nodeid: str | None = None  # the test running now (progress lines resume its line)
    report_lines: list[str] = field(default_factory=list)  # what the report writer says in the summary
    stopped: str | None = None  # why the run did not finish (report.safety.stop_reason), None when it did
    results: list[dict] = field(default_factory=list)
    selected: set[str] = field(default_factory=set)
    _thresholds: object = None
    _evidence: dict = field(default_factory=dict)
    _probe_suite: object = None
    _checkpoints: object = None
    _results_cache: object = None

    @property
    def results_cache(self):
        """The :class:`~vlmdiag.cache.ResultsCache`, or None under ``--no-cache``."""
        if self.use_cache and self._results_cache is None:
            from vlmdiag.cache import ResultsCache

            self._results_cache = ResultsCache()
        return self._results_cache if self.use_cache else None

    @property
    def thresholds(self):
        if self._thresholds is None:
            from vlmdiag.claims import load_thresholds

            self._thresholds = load_thresholds(self.thresholds_path)
        return self._thresholds

    @property
    def checkpoints(self):
        if self._checkpoints is None:
            from vlmdiag.runner import CheckpointCache

            self._checkpoints = CheckpointCache(allow_pickle=self.allow_pickle,
                                                trust_remote_code=self.trust_remote_code, store=self.results_cache)
        return self._checkpoints

    @property
    def probe_suite(self):
        """The run's :class:`~vlmdiag.probes.suite.ProbeSuite` (``--probes``; default ``organism``)."""
        if self._probe_suite is None:
            from vlmdiag.probes.suite import open_suite

            self._probe_suite = open_suite(getattr(self, "probes", None) or "organism")
        return self._probe_suite

    def evidence(self, recipe: str):
        """The recipe's :class:`~vlmdiag.runner.Runner` (its measurements, made once per run)."""
        if recipe not in self._evidence:
            from vlmdiag.claims import all_claims
            from vlmdiag.runner import Runner

            claims = all_claims()
            self._evidence[recipe] = Runner(self.recipes[recipe], self.checkpoints, probes=self.probe_suite,
                                            wanted={claims[c].measurement for c in self.selected if c in claims},
                                            results=self.results_cache, progress=self.progress)
        return self._evidence[recipe]

    def regions_of(self, recipe: str):
        """What :func:`~vlmdiag.claims.run_claim` gets as regions: the ``--regions`` value, or for
        ``localized`` a function deriving the cuts from the recipe's base checkpoint (its curves
        are measured once, in the recipe's evidence)."""
        if self.regions != "localized":
            return self.regions
        from vlmdiag.runner.localized import localized_regions_for

        return lambda: localized_regions_for(self.evidence(recipe), self.thresholds)

    def validate_inputs(self) -> None:
        """Open every checkpoint, check each recipe's are comparable and its regions fit, and
        read the thresholds: bad input fails here, before any claim runs."""
        from vlmdiag.checkpoints import check_compatible
        from vlmdiag.regions import regions_for
        from vlmdiag.report.safety import check_outputs

        self.thresholds  # noqa: B018  (validates the file)
        folders = [self.checkpoints.get(spec).path for r in self.recipes.values() for spec in r.specs().values()]
        check_outputs(self.report_json, self.results_cache.root if self.use_cache else None, folders)
        if self.reports.report_md is not None:
            from vlmdiag.paths import check_output

            check_output(self.reports.report_md, "--report-md", folders, fix="; write the summary elsewhere")
        for recipe in self.recipes.values():
            opened = [self.checkpoints.get(spec) for spec in recipe.specs().values()]
            check_compatible(*opened)
            if self.regions == "localized":
                from vlmdiag.runner.localized import check_localized_inputs

                check_localized_inputs(self.thresholds, opened[0].path, recipe.base)
            else:
                regions_for(self.regions, opened[0].num_llm_layers)
        self.reports.check_baseline(regions=self.regions, layers={
            name: self.checkpoints.get(recipe.base).num_llm_layers for name, recipe in self.recipes.items()})
        self._check_inference_inputs()

    def _check_inference_inputs(self) -> None:
        """When an inference claim is selected: the tokenizer, processor and image token of every
        checkpoint that can run (no weights are read), so a bad one is a usage error up front."""
        from vlmdiag.claims import all_claims
        from vlmdiag.runner import can_run

        claims = all_claims()
        # An xdist controller checks before any test is selected (selected is empty): check all.
        if self.selected and not any("inference" in claims[c].needs for c in self.selected if c in claims):
            return
        from vlmdiag.runtime.model import inference_parts

        opened = {str(c.path): c for c in (self.checkpoints.get(spec) for r in self.recipes.values()
                                           for spec in r.specs().values())}
        for _, checkpoint in sorted(opened.items()):
            if not can_run(checkpoint.path):
                continue
            check = partial(inference_parts, checkpoint.path, trust_remote_code=self.trust_remote_code)
            if self.results_cache is None:
                check()
                continue
            # Loading a processor costs seconds of imports: a rerun on the same files remembers
            # that it passed (only passes are stored: a failure raises and is checked again).
            from vlmdiag.cache import checkpoint_identity, key_material

            material = key_material("inference_inputs", checkpoints={"checkpoint": checkpoint_identity(checkpoint)},
                                    device="any", settings={"trust_remote_code": self.trust_remote_code})
            self.results_cache.obtain("inference_inputs", material, lambda check=check: bool(check()))

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


@pytest.hookimpl(tryfirst=True)  # before pytest's own implementation, which loads conftests
def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from vlmdiag import hookspec

    pluginmanager.add_hookspecs(hookspec)


_FORGET = pytest.StashKey[object]()  # undoes what the vlmdiag hooks registered


def _extend(config: pytest.Config) -> None:
    """Register the built-in plugins (the model organism), call vlmdiag's hooks
    (:mod:`vlmdiag.hookspec`: conftest.py files and plugins add claims, measurements, probe
    suites, resolvers, families) and check every claim against its measurement's plan.

    Raises:
        pytest.UsageError: a registration clashes, or a claim disagrees with its plan.
    """
    import importlib

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


def pytest_load_initial_conftests(early_config: pytest.Config, args: list[str]) -> None:
    invocation.fix_rootdir(early_config, args)
    invocation.keep_pytest_cache_out_of_checkpoints(early_config)


@pytest.hookimpl(tryfirst=True)  # before anything may initialise CUDA in a worker
def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        _configure_worker(config, workerinput)
    config.addinivalue_line("markers", "slow: takes minutes (the full organism build, benchmarks)")
    config.addinivalue_line("markers", "claim(id): the vlmdiag claim a diagnostic checks")
    from vlmdiag.regions import parse_regions

    try:
        recipes = invocation.run_recipes(partial(_value, config))
        regions = parse_regions(_value(config, "regions") or "paper")
    except VlmdiagError as error:
        raise pytest.UsageError(printable(error)) from None
    if recipes and not config.getoption("help", False):
        _extend(config)
    try:
        thresholds = invocation.thresholds_path(_value(config, "thresholds"), config.rootpath)
        if recipes and not config.getoption("help", False):
            invocation.check_local_checkpoints(recipes)
            collect = invocation.collection_args(config)
            if collect is not None:
                config.args[:] = collect
                # Else pytest's header names the testpaths this run does not collect.
                config.args_source = pytest.Config.ArgsSource.ARGS
    except VlmdiagError as error:
        raise pytest.UsageError(printable(error)) from None
    report_json = _value(config, "report_json")
    if report_json:
        from vlmdiag.report.safety import check_report_path

        try:
            report_json = check_report_path(report_json)
        except VlmdiagError as error:
            raise pytest.UsageError(printable(error)) from None
    config.stash[STATE] = state = RunState(
        recipes={r.name: r for r in recipes}, regions=regions, thresholds_path=thresholds,
        report_json=report_json, report_only=bool(_value(config, "report_only")),
        allow_pickle=bool(_value(config, "allow_pickle")),
        trust_remote_code=bool(_value(config, "trust_remote_code")),
        use_cache=not _value(config, "no_cache"))
    from vlmdiag.report.options import ReportOptions

    try:
        state.reports = ReportOptions.from_config(partial(_value, config))
    except VlmdiagError as error:
        raise pytest.UsageError(printable(error)) from None
    config.pluginmanager.register(ReportWriter(state, config), "vlmdiag-report-writer")
    config.pluginmanager.register(SummaryWriter(state, config), "vlmdiag-summary-writer")
    if _xdist_controller(config):
        if state.recipes and not config.getoption("help", False):
            # Workers collect, the controller does not: check the inputs here, once, rather
            # than as one crash per worker.
            try:
                state.validate_inputs()
            except VlmdiagError as error:
                raise pytest.UsageError(printable(error)) from None


# ---------------------------------------------------------------------------- pytest-xdist

def diagnostic_scope(nodeid: str, recipes) -> str:
    """The unit of work that one xdist worker runs whole: a diagnostics file and one recipe
    (``diagnostics/test_updates.py[main]``), or the file alone for tests without a recipe.

    The claims that share a measurement live in one file (the three weight claims share one
    weight pass; the two localization claims, one loaded base model), so each measurement is
    made once, by one worker, while other files and recipes run on the other workers.
    """
    module, _, rest = nodeid.partition("::")
    match = re.search(r"\[(.*)\]$", rest)
    if match:
        ids = match.group(1)
        for name in sorted(recipes, key=len, reverse=True):
            if ids == name or ids.startswith(f"{name}-") or ids.endswith(f"-{name}") or f"-{name}-" in ids:
                return f"{module}[{name}]"
    return module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``-n N`` without ``--dist``: schedule whole :func:`diagnostic_scope` units.

    (``--dist loadgroup`` with ``xdist_group`` marks would do, but pytest-xdist 3.8 cannot group
    under pytest 9.2, pytest-dev/pytest-xdist#1386.) An explicit ``--dist`` is respected."""
    state = config.stash.get(STATE, None)
    if state is None or not state.recipes or _dist_given(config):
        return None
    from xdist.scheduler import LoadScopeScheduling

    recipes = tuple(state.recipes)

    class DiagnosticScopeScheduling(LoadScopeScheduling):
        """Load balancing over whole (diagnostics file, recipe) units."""

        def _split_scope(self, nodeid: str) -> str:
            return diagnostic_scope(nodeid, recipes)

    return DiagnosticScopeScheduling(config, log)


def worker_cuda_visible_devices(worker_id: str | None, current: str | None, device_count: int) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` value for pytest-xdist worker ``worker_id`` (``gwN``): GPU
    ``N mod device_count``, so each worker has a GPU of its own (round robin when there are more
    workers than GPUs).

    Returns None, meaning leave the environment alone, outside a worker, without CUDA devices,
    or when ``current`` (the user's ``CUDA_VISIBLE_DEVICES``, even empty) is set.
    """
    if not worker_id or device_count < 1 or current is not None:
        return None
    match = re.fullmatch(r"gw(\d+)", worker_id)
    return str(int(match.group(1)) % device_count) if match else None


def worker_cpu_threads(worker_count: int, cpus: int, environ: dict) -> int | None:
    """Torch CPU threads for each of ``worker_count`` pytest-xdist workers sharing ``cpus`` cores:
    ``cpus // worker_count``, at least 1. Each torch process otherwise starts one thread per core,
    and two workers on two cores then run four spinning threads: the organism suite ran 3.6×
    slower with ``-n 2`` than without (bench/RESULTS.md, "Full suite").

    Returns None (leave torch's default) with fewer than two workers, or when the user set
    ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` in ``environ``.
    """
    if worker_count < 2 or environ.get("OMP_NUM_THREADS") or environ.get("MKL_NUM_THREADS"):
        return None
    return max(1, cpus // worker_count)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cuda_device_count() -> int:
    """CUDA devices visible to this process; 0 without an NVIDIA driver (torch is not even
    imported then)."""
    if not (Path("/proc/driver/nvidia").exists() or shutil.which("nvidia-smi")):
        return 0
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 — a broken driver means no GPU to pin
        return 0


def _xdist_controller(config: pytest.Config) -> bool:
    return (getattr(config, "workerinput", None) is None and config.getoption("dist", "no") != "no"
            and bool(config.getoption("tx", None)))


def _dist_given(config: pytest.Config) -> bool:
    """Whether the user chose an xdist ``--dist`` mode (command line, PYTEST_ADDOPTS or addopts)."""
    args = [*config.invocation_params.args, *os.environ.get("PYTEST_ADDOPTS", "").split(),
            *config.getini("addopts")]
    return any(a in ("--dist", "-d", "--distload") or a.startswith("--dist=") for a in map(str, args))


def _configure_worker(config: pytest.Config, workerinput: dict) -> None:
    """In an xdist worker: pin it to its GPU before torch initialises CUDA, and give it its share
    of the CPU cores."""
    pin = worker_cuda_visible_devices(workerinput.get("workerid"), os.environ.get("CUDA_VISIBLE_DEVICES"),
                                      int(workerinput.get("vlmdiag_cuda_devices", 0)))
    if pin is not None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            warnings.warn(f"vlmdiag: CUDA was initialised before worker {workerinput.get('workerid')} could be "
                          f"pinned to GPU {pin}; set CUDA_VISIBLE_DEVICES yourself", pytest.PytestConfigWarning)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = pin
    threads = worker_cpu_threads(int(workerinput.get("workercount", 1)), _usable_cpus(), dict(os.environ))
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """Controller side: tell each worker how many GPUs there are."""
    config = node.config
    if _CUDA_COUNT not in config.stash:
        config.stash[_CUDA_COUNT] = _cuda_device_count()
    node.workerinput["vlmdiag_cuda_devices"] = config.stash[_CUDA_COUNT]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """Controller side: a worker's usage error (no checkpoints given), to report once."""
    message = (getattr(node, "workeroutput", None) or {}).get("vlmdiag_usage_error")
    state = node.config.stash.get(STATE, None)
    if message and state is not None:
        state.usage_error = message


_CUDA_COUNT = pytest.StashKey[int]()


def _step_progress(config: pytest.Config):
    """The progress display of the long measurement steps (:mod:`vlmdiag.report.progress`)."""
    from vlmdiag.report.progress import StepProgress, choose_mode

    worker = os.environ.get("PYTEST_XDIST_WORKER") if getattr(config, "workerinput", None) is not None else None
    reporter = config.pluginmanager.getplugin("terminalreporter")
    capman = config.pluginmanager.getplugin("capturemanager")
    suspend = capman.global_and_fixture_disabled if capman is not None else contextlib.nullcontext
    interactive = reporter is not None and bool(reporter.isatty) and reporter.hasmarkup
    mode = choose_mode(verbosity=config.get_verbosity(), worker=worker is not None, interactive=interactive)
    if worker is not None:
        # A worker's stdout is xdist's channel; its stderr is the terminal the controller runs in.
        def write_line(text: str) -> None:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

        return StepProgress(mode, write_line=write_line, suspend=suspend, prefix=f"[{worker}] ")
    if reporter is None:
        return StepProgress("off")

    def console():
        from rich.console import Console

        return Console(force_terminal=True, width=reporter._tw.fullwidth)

    def resume() -> None:
        # Without -v pytest writes a file's result letters after its path on one line: put
        # the path back so the letters that follow the step are not left on a line alone.
        nodeid = config.stash[STATE].current_nodeid
        if nodeid and config.get_verbosity() <= 0:
            fspath = config.rootpath / nodeid.split("::")[0]
            reporter.currentfspath = fspath
            reporter.write(os.path.relpath(fspath, reporter.startpath) + " ")

    return StepProgress(mode, write_line=reporter.write_line, console=console, suspend=suspend,
                        begin=reporter.ensure_newline, end=resume)


def pytest_sessionstart(session: pytest.Session) -> None:
    # After pytest_configure: the terminal reporter and the capture manager exist now.
    state = session.config.stash.get(STATE, None)
    if state is not None:
        state.progress = _step_progress(session.config)


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
        result = run_claim(claims[claim_id], evidence, state.regions_of(recipe), state.thresholds.get(claim_id))
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


class ReportWriter:
    """Collects every result from the test reports and writes the JSON report and plots.

    Registered in ``pytest_configure``, so it holds the run state without a module global."""

    def __init__(self, state: RunState, config: pytest.Config):
        self.state, self.config = state, config
        self.finished = 0  # tests run to the end (under xdist, reported by the workers)

    @pytest.hookimpl
    def pytest_runtest_logstart(self, nodeid: str, location) -> None:
        self.state.current_nodeid = nodeid

    @pytest.hookimpl
    def pytest_runtest_logfinish(self, nodeid: str, location) -> None:
        self.finished += 1

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        text = getattr(report, "vlmdiag_result", None) if report.when == "call" else None
        if text is None:
            return
        result = json.loads(text)
        self.state.results.append(result)
        xml = self.config.stash.get(_junit_xml_key(), None)
        if xml is not None:  # valid under every junit_family, including xunit2, and with xdist
            for key, value in self.state.reports.properties(result):
                xml.add_global_property(f"vlmdiag {result['id']}[{result['recipe']}] {key}", value)

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from vlmdiag.report.safety import stop_reason

        state = self.state
        if state.usage_error and getattr(self.config, "workerinput", None) is None:
            session.exitstatus = exitstatus = pytest.ExitCode.USAGE_ERROR
        early = session.shouldfail or session.shouldstop  # -x, --maxfail: complete if nothing was left
        state.stopped = stopped = stop_reason(exitstatus, early if self.finished < session.testscollected else None)
        if getattr(self.config, "workerinput", None) is not None or not state.report_json:
            return
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return
        if not state.results and not state.selected:
            return
        from vlmdiag.report.document import build_report
        from vlmdiag.report.safety import write_report

        try:
            cache = {"enabled": state.use_cache, "dir": str(state.results_cache.root) if state.use_cache else None}
            report = build_report(state.results, checkpoints=state.checkpoint_table(), regions=state.regions,
                                  thresholds=str(state.thresholds_path), cache=cache,
                                  baseline=state.reports.baseline_summary(state.results))
            state.report_lines, problem = write_report(state.report_json, report, stopped=stopped)
        except Exception as error:  # noqa: BLE001 — a report that cannot be built loses nothing old
            problem = (f"--report-json {state.report_json}: cannot build the report ({type(error).__name__}: "
                       f"{error}); nothing was written")
        if problem:
            state.usage_error = printable(problem)
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.USAGE_ERROR
        if exitstatus == pytest.ExitCode.INTERNAL_ERROR:  # pytest prints no terminal summary then
            reporter = self.config.pluginmanager.getplugin("terminalreporter")
            for line in [*state.report_lines, *([f"ERROR: {state.usage_error}"] if problem else [])]:
                if reporter is not None:
                    reporter.write_line(printable(line), red=True)


def _junit_xml_key():
    """Where ``--junitxml`` keeps its LogXML (pytest-internal: a key no run holds if it moves)."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:
        return pytest.StashKey[object]()
    return xml_key


class SummaryWriter:
    """Writes the Markdown summary (``--report-md``, ``$GITHUB_STEP_SUMMARY``) after the JSON
    report and its plots (``trylast``), in the process that saw every result."""

    def __init__(self, state: RunState, config: pytest.Config):
        self.state, self.config = state, config

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        state = self.state
        if getattr(self.config, "workerinput", None) is not None or not state.results:
            return
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return
        from vlmdiag.report.markdown import write_summaries

        if state.stopped is not None and state.reports.report_md is not None:
            # as with the JSON report: an unfinished run replaces no summary (its results are in
            # the .incomplete.json beside the report, when there is one)
            state.report_lines.append(f"vlmdiag: the run {state.stopped}: --report-md "
                                      f"{state.reports.report_md} was not written")
        problem = write_summaries(state.results, state.reports, regions=state.regions,
                                  report_json=state.report_json, environ=os.environ,
                                  write_md=state.stopped is None)
        if problem:
            state.usage_error = printable(problem)
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.USAGE_ERROR


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and state.usage_error:
        terminalreporter.write_line(f"ERROR: {printable(state.usage_error)}", red=True)
    if state is not None and not state.results:
        for line in state.report_lines:
            terminalreporter.write_line(printable(line), yellow=True)
    if state is None or not state.results:
        return
    from vlmdiag.report.terminal import render

    terminalreporter.section("vlmdiag")
    report = {"claims": state.results, "regions": state.regions}
    terminalreporter.write(render(report, width=terminalreporter._tw.fullwidth, color=terminalreporter.hasmarkup))
    line = _cache_line(state)
    if line:
        terminalreporter.write_line(printable(line))
    for line in state.report_lines:
        terminalreporter.write_line(printable(line), yellow=not line.startswith("report: "))


def _cache_line(state: RunState) -> str | None:
    """``cache: 7 of 9 claims from .../results (--no-cache measures again)``."""
    measured = [r for r in state.results if (r.get("cache") or {}).get("measurements")]
    if not measured:
        return None
    if not state.use_cache:
        return "cache: off (--no-cache)"
    hits = sum(1 for r in measured if r["cache"]["from_cache"])
    return (f"cache: {hits} of {len(measured)} measured claims read their measurements from "
            f"{state.results_cache.root} (--no-cache measures again; `vlmdiag cache clear` empties it)")
