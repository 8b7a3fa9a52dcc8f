"""How ``pytest --base X --rl Y`` becomes a vlmdiag run from any folder: pytest's rootdir and
configuration file, which tests are collected, the thresholds file, and the checkpoint folders
pytest must not write into. Called from :mod:`vlmdiag.plugin`.

Which tests run (the README's "Which tests run" says the same): a run with checkpoints
(``--base``/``--rl`` or ``--recipe``, on the command line or as ini keys) and no test paths on
the command line collects vlmdiag's packaged diagnostics (:func:`vlmdiag.packaged.diagnostics_dir`)
instead of ``testpaths`` or the current folder; named paths are collected exactly as pytest
always does; a run without checkpoints collects what pytest always does.
"""

from __future__ import annotations

import copy
import inspect
import os
from pathlib import Path

import pytest

from vlmdiag.errors import UsageError
from vlmdiag.packaged import default_thresholds, diagnostics_dir


def _vlmdiag_options_given(namespace) -> bool:
    return any(value for dest, value in vars(namespace).items() if dest.startswith("vlmdiag_"))


def fix_rootdir(config: pytest.Config, args: list[str]) -> None:
    """Give pytest the rootdir and configuration file it would have chosen without vlmdiag's
    option values. Call from ``pytest_load_initial_conftests`` (its ``args``: the list pytest
    goes on to parse).

    pytest derives its rootdir and ini file from the command line's free arguments before it
    loads plugins, so in ``pytest --base /data/sft --rl /data/rl`` it reads ``/data/sft`` and
    ``/data/rl`` as test paths, roots at ``/data`` and misses the configuration (``testpaths``,
    ``addopts``, markers, ``thresholds.yaml``) of the folder pytest was started in. Now that the
    options are known, the free arguments are parsed again and pytest's own rule
    (``determine_setup``) is re-run; when its answer differs, the configuration pytest has read so
    far is replaced: rootdir, ini file and values, the ini file's ``addopts`` (and the plugins
    its ``-p`` names), ``pythonpath``, ``minversion`` and the default ``--confcutdir``. A
    capture mode set by the ini file's ``addopts`` (``-s``) does not apply, as the capture
    manager has already started. Runs without vlmdiag options are left alone.

    Written against pytest 9.2's ``Config.parse``; where pytest's internals differ, pytest's own
    choice stands, or (if replacing it fails half way) a usage error says to write ``--base=PATH``.

    Raises:
        pytest.UsageError: the configuration could not be replaced on this pytest.
    """
    namespace = config.known_args_namespace
    if not _vlmdiag_options_given(namespace):
        return
    try:
        from _pytest.config.findpaths import determine_setup

        setup = {"inifile": namespace.inifilename, "args": namespace.file_or_dir,
                 "rootdir_cmd_arg": namespace.rootdir or None, "invocation_dir": config.invocation_params.dir}
        if "override_ini" in inspect.signature(determine_setup).parameters:  # pytest >= 9
            setup["override_ini"] = namespace.override_ini
        rootpath, inipath, inicfg, *ignored = determine_setup(**setup)
    except (ImportError, TypeError, AttributeError):  # another pytest's internals: keep its choice
        return
    if (rootpath, inipath) == (config.rootpath, config.inipath):
        return
    try:
        old_addopts = list(config.getini("addopts"))
        config._rootpath, config._inipath, config._inicfg = rootpath, inipath, inicfg
        if ignored:
            config._ignored_config_files = ignored[0]
        config._inicache.clear()
        config._parser.extra_info.update(rootdir=str(rootpath), inifile=str(inipath))
        if old_addopts and args[:len(old_addopts)] == old_addopts:
            del args[:len(old_addopts)]
        addopts = config._validate_args(list(config.getini("addopts")), "via addopts config")
        args[:0] = addopts
        config.known_args_namespace = namespace = config._parser.parse_known_args(
            args, namespace=copy.copy(config.option))
        config.pluginmanager.consider_preparse(addopts, exclude_only=False)
        config._checkversion()
        if hasattr(config, "_configure_python_path"):  # pytest 9; pytest 8's pythonpath plugin reads it later
            config._configure_python_path()
    except AttributeError as error:
        raise pytest.UsageError(
            f"vlmdiag cannot correct the rootdir pytest took from a path-valued option on this "
            f"pytest ({error}); write path options as --base=PATH (with '='), or add --rootdir .") from None
    if namespace.confcutdir is None:
        namespace.confcutdir = str(inipath.parent if inipath is not None else rootpath)


def run_recipes(value) -> list:
    """The recipes of a run (``--base/--rl/--origin``, ``--recipe``, ``--rl-frozen``), given
    ``value(dest)``: the option's value, else its ini key's. Imports the parsers (and with them
    torch, seconds) only when a checkpoint is given, so a run of the user's own tests pays nothing.

    Raises:
        vlmdiag.errors.UsageError: a malformed value (see :mod:`vlmdiag.options`).
    """
    values = {dest: value(dest) for dest in ("base", "rl", "origin", "recipe", "rl_frozen")}
    if not any(values.values()):
        return []
    from vlmdiag.options import parse_recipe, parse_rl_frozen, recipes_from

    return recipes_from(values["base"], values["rl"], values["origin"],
                        [parse_recipe(r) for r in values["recipe"] or []],
                        [parse_rl_frozen(r) for r in values["rl_frozen"] or []])


def collection_args(config: pytest.Config) -> list[str] | None:
    """What a run with checkpoints collects: vlmdiag's packaged diagnostics folder when no test
    paths were named on the command line, else None (collect what pytest chose). (Outside the
    rootdir, as in an installed package, its tests' node ids start at the folder:
    ``test_updates.py::...``.)"""
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        return None
    return [str(diagnostics_dir())]


def thresholds_path(given: str | None, rootpath: Path) -> Path:
    """The thresholds file of a run: ``--thresholds`` (or the ``vlmdiag_thresholds`` ini key),
    else ``thresholds.yaml`` in the rootdir (the user's project), else the packaged default."""
    if given:
        return Path(given)
    own = rootpath / "thresholds.yaml"
    return own if own.is_file() else default_thresholds()


def check_local_checkpoints(recipes) -> None:
    """Every checkpoint given as a local path (absolute, ``~`` or starting with ``.``) is a folder.
    Cheap (no weights read, no network): runs whether or not a diagnostic is selected, so a
    mistyped ``--base /data/sft`` is a usage error even when only the user's own tests run.

    Raises:
        vlmdiag.errors.CheckpointError: the folder does not exist, or is a file.
    """
    from vlmdiag.checkpoints.resolve import resolve_checkpoint

    for recipe in recipes:
        for spec in recipe.specs().values():
            if os.path.isabs(os.path.expanduser(spec)) or spec.startswith("."):  # never a hub id
                resolve_checkpoint(spec)


def keep_pytest_cache_out_of_checkpoints(config: pytest.Config) -> None:
    """Turn pytest's cache plugin off when its folder (``cache_dir``, default
    ``<rootdir>/.pytest_cache``) would lie inside a local checkpoint folder, e.g. when pytest is
    started from inside one: vlmdiag never writes into a checkpoint folder. Call before
    ``pytest_configure`` (the cache plugin makes its folder there)."""
    if not config.pluginmanager.has_plugin("cacheprovider"):  # -p no:cacheprovider
        return
    namespace = config.known_args_namespace

    def value(dest: str):
        given = getattr(namespace, f"vlmdiag_{dest}", None)
        return given if given not in (None, [], False) else config.getini(f"vlmdiag_{dest}")

    try:
        recipes = run_recipes(value)
    except UsageError:
        return  # pytest_configure reports it
    cache_dir = Path(os.path.expandvars(os.path.expanduser(config.getini("cache_dir"))))
    cache_dir = Path(os.path.abspath(config.rootpath / cache_dir)).resolve()
    for recipe in recipes:
        for spec in recipe.specs().values():
            folder = Path(os.path.expanduser(spec)).absolute()
            if folder.is_dir() and cache_dir.is_relative_to(folder.resolve()):
                config.pluginmanager.consider_pluginarg("no:cacheprovider")  # as -p no:cacheprovider
                return
