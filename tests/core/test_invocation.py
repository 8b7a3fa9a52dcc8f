"""How a pytest run finds vlmdiag's diagnostics and thresholds, checks local checkpoint folders up
front, and keeps pytest's cache out of checkpoint folders (vlmdiag/invocation.py, packaged.py).
The installed-wheel run from another folder is tests/core/test_installed.py."""

from pathlib import Path

import pytest
from pytest_runs import run_pytest

from vlmdiag.runner import RecipeCheckpoints as Recipe
from vlmdiag.errors import CheckpointError
from vlmdiag.invocation import check_local_checkpoints, thresholds_path
from vlmdiag.packaged import default_thresholds, diagnostics_dir

from test_installed import _tree_hash  # one definition of "nothing under this folder changed"

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_finds_its_own_diagnostics_and_thresholds():
    assert diagnostics_dir() == ROOT / "diagnostics"
    assert default_thresholds() == ROOT / "thresholds.yaml"


def test_thresholds_option_then_the_projects_file_then_the_packaged_one(tmp_path):
    assert thresholds_path(None, tmp_path) == default_thresholds()
    (tmp_path / "thresholds.yaml").write_text("schema_version: 1\n")
    assert thresholds_path(None, tmp_path) == tmp_path / "thresholds.yaml"
    assert thresholds_path("strict.yaml", tmp_path) == Path("strict.yaml")


def test_a_missing_local_checkpoint_folder_is_found_without_reading_or_downloading(tmp_path):
    (tmp_path / "base").mkdir()
    check_local_checkpoints([Recipe("main", str(tmp_path / "base"), "org/name-on-the-hub", "organism:base")])
    with pytest.raises(CheckpointError, match="rl: checkpoint folder does not exist"):
        check_local_checkpoints([Recipe("main", str(tmp_path / "base"), str(tmp_path / "rl"))])
    (tmp_path / "file").write_text("")
    with pytest.raises(CheckpointError, match="this is a file"):
        check_local_checkpoints([Recipe("main", str(tmp_path / "base"), str(tmp_path / "file"))])


def _pytest(*args, cwd):
    # -p no:benchmark: pytest-benchmark (a bench extra) makes .benchmarks in the rootdir; not vlmdiag's
    return run_pytest("-p", "no:benchmark", *args, cwd=cwd)


def test_pytest_started_inside_a_checkpoint_folder_writes_nothing_into_it(planted):
    paths = planted("paper")
    base = Path(paths["base"])
    before = _tree_hash(base.parent)
    code, out = _pytest("--base", ".", "--rl", "../rl", cwd=base)
    assert code == 0, out
    assert f"rootdir: {base}" in out and "passed" in out, out
    assert _tree_hash(base.parent) == before


def test_a_missing_checkpoint_folder_is_a_usage_error_even_when_only_the_users_tests_run(tmp_path):
    (tmp_path / "test_own.py").write_text("def test_own():\n    pass\n")
    code, out = _pytest("test_own.py", "--base", tmp_path / "sft", "--rl", tmp_path / "rl", cwd=tmp_path)
    assert code == 4, out
    assert f"{tmp_path / 'sft'}: checkpoint folder does not exist" in out
