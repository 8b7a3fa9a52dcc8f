"""The run state: everything one pytest run knows about vlmdiag (:class:`RunState`, kept in
``config.stash[STATE]``), and the input checks made before any claim runs."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest

from vlmdiag.errors import VlmdiagError, printable


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
    probes: str | None = None  # --probes (None: the default suite of the run's checkpoints)
    log_samples: str | None = None  # --log-samples folder
    sequential: bool = False  # --sequential (thresholds.yaml's sequential.enabled also turns it on)
    reports: object = field(default_factory=_report_options)  # --baseline, --report-md, ...
    progress: object = None  # a vlmdiag.report.progress.StepProgress, set in pytest_configure
    usage_error: str | None = None  # an xdist worker's usage error, reported once by the controller
    current_nodeid: str | None = None  # the test running now (progress lines resume its line)
    report_lines: list[str] = field(default_factory=list)  # what the report writer says in the summary
    stopped: str | None = None  # why the run did not finish (report.safety.stop_reason), None when it did
    results: list[dict] = field(default_factory=list)
    selected: set[str] = field(default_factory=set)
    worker_probes: dict = field(default_factory=dict)  # xdist worker id -> the probe items it drew (controller)
    _thresholds: object = None
    _evidence: dict = field(default_factory=dict)
    _probe_suite: object = None
    _samples: object = None
    _checkpoints: object = None
    _results_cache: object = None

    @property
    def probe_suite(self):
        """The run's :class:`~vlmdiag.probes.suite.ProbeSuite` (``--probes``, else organism when
        every checkpoint is ``organism:*``, else synthetic), opened once."""
        if self._probe_suite is None:
            from vlmdiag.plugin.probes import run_suite

            specs = [spec for r in self.recipes.values() for spec in r.specs().values()]
            self._probe_suite = run_suite(self.probes, specs)
        return self._probe_suite

    def _sample_log(self):
        """:meth:`sample_log`, made once per run (None without ``--log-samples``)."""
        if self.log_samples and self._samples is None:
            self._samples = self.sample_log()
        return self._samples

    def sample_log(self):
        """The :class:`~vlmdiag.measure.samples.SampleLog` of ``--log-samples``, or None."""
        from vlmdiag.plugin.probes import sample_log

        folders = [self.checkpoints.get(spec).path for r in self.recipes.values() for spec in r.specs().values()]
        return sample_log(self.log_samples, folders)

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

    def evidence(self, recipe: str):
        """The recipe's :class:`~vlmdiag.runner.Runner` (its measurements, made once per run)."""
        if recipe not in self._evidence:
            from vlmdiag.claims import all_claims
            from vlmdiag.runner import Runner

            claims = all_claims()
            self._evidence[recipe] = Runner(self.recipes[recipe], self.checkpoints, probes=self.probe_suite,
                                            wanted={claims[c].measurement for c in self.selected if c in claims},
                                            results=self.results_cache, progress=self.progress,
                                            sample_log=self._sample_log())
        return self._evidence[recipe]

    def sequential_rule(self):
        """The :class:`~vlmdiag.claims.thresholds.SequentialRule` the inference claims are judged
        with (:mod:`vlmdiag.sequential`), or None when the design is off (the default)."""
        rule = self.thresholds.sequential
        return rule if self.sequential or rule.enabled else None

    def regions_of(self, recipe: str):
        """What :func:`~vlmdiag.claims.run_claim` gets as regions: the ``--regions`` value, or for
        ``localized`` a function deriving the cuts from the recipe's base checkpoint (its curves
        are measured once, in the recipe's runner)."""
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
        if self.log_samples:
            from vlmdiag.paths import check_output

            check_output(self.log_samples, "--log-samples", folders, folder=True, fix="; write the samples elsewhere")
        for recipe in self.recipes.values():
            opened = [self.checkpoints.get(spec) for spec in recipe.specs().values()]
            check_compatible(*opened)
            if self.regions == "localized":
                from vlmdiag.runner.localized import check_localized_inputs

                check_localized_inputs(self.thresholds, opened[0].path, recipe.base)
            else:
                regions_for(self.regions, opened[0].num_llm_layers)
        from vlmdiag.plugin.probes import probes_section

        self.reports.check_baseline(regions=self.regions, layers={
            name: self.checkpoints.get(recipe.base).num_llm_layers for name, recipe in self.recipes.items()},
            probes=lambda: probes_section(self.probe_suite))
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


@contextlib.contextmanager
def usage_errors():
    """Turn a :class:`~vlmdiag.errors.VlmdiagError` raised in the block into a
    ``pytest.UsageError`` (exit code 4) whose message is its one printable line, no traceback."""
    try:
        yield
    except VlmdiagError as error:
        raise pytest.UsageError(printable(error)) from None
