"""The vlmdiag command-line options and ini keys (``pytest_addoption``), and how the plugin reads
one: the command line first, then the ini file."""

from __future__ import annotations

import pytest

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
    from vlmdiag.plugin.probes import OPTIONS as PROBE_OPTIONS

    options += PROBE_OPTIONS  # --probes, --log-samples
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
            ("--no-plots", "no_plots", "write the JSON report without its per-layer PNG plots (they take ~0.3 s "
                                       "each on a CPU)"),
            ("--no-cache", "no_cache", "measure everything again: neither read nor write the results cache "
                                       "($VLMDIAG_CACHE_DIR or ~/.cache/vlmdiag, under results/)"),
            ("--sequential", "sequential", "judge the inference claims in rounds: measure more probe items only "
                                           "until a claim is decided, up to a maximum N, with Bonferroni error "
                                           "spending over the looks (sequential in thresholds.yaml sets them)")):
        group.addoption(flag, dest=f"vlmdiag_{dest}", action="store_true", default=False, help=help_text)
        parser.addini(f"vlmdiag_{dest}", help_text, type="bool", default=False)


def option_value(config: pytest.Config, dest: str):
    """Option ``vlmdiag_<dest>`` from the command line, else its ini key; None when unset or empty."""
    value = config.getoption(f"vlmdiag_{dest}")
    if value in (None, [], False):
        value = config.getini(f"vlmdiag_{dest}")
    return value or None
