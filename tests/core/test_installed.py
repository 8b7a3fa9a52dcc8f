"""`pip install vlmdiag` (a wheel built from this tree, not editable), then `pytest --base /abs/sft
--rl /abs/rl` in an unrelated project folder that has its own pyproject.toml and tests.

The wheel goes into a fresh venv (no pip, no torch reinstall) that sees this environment's
packages through a site dir of links, minus vlmdiag's own (the editable install), so the only
vlmdiag it can import is the wheel's."""

import hashlib
import importlib.metadata
import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "thresholds.yaml", "vlmdiag", "diagnostics")
CLAIMS = 11  # the paper's nine and issue 17's rl_sparse, rl_off_principal


def _run(*args, cwd=None, env=None, timeout=300):
    proc = subprocess.run([*map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(pytest_command, env)``: a ``pytest`` script of a venv holding the wheel."""
    root = tmp_path_factory.mktemp("installed")
    source = root / "source"  # a copy, so the build writes no build/ or egg-info into the tree
    source.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    code, out = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                     "--disable-pip-version-check", "-w", root / "wheels", source)
    assert code == 0, out
    (wheel,) = (root / "wheels").glob("vlmdiag-*.whl")

    # This environment's packages without vlmdiag: links in a folder the venv adds as a site dir.
    deps = root / "deps"
    deps.mkdir()
    for packages in site.getsitepackages():
        for entry in Path(packages).iterdir():
            if "vlmdiag" not in entry.name and not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)
    venv = root / "venv"
    code, out = _run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert code == 0, out
    python = venv / "bin" / "python"
    code, purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    assert code == 0, purelib
    Path(purelib.strip(), "_parent_env.pth").write_text(f"import site; site.addsitedir({str(deps)!r})\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PYTEST_")}
    env["OMP_NUM_THREADS"] = "1"
    code, out = _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--disable-pip-version-check",
                     wheel, env=env)
    assert code == 0, out
    # The `pytest` command as pip writes it for pytest's console-script entry point.
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="pytest")
    module, _, function = entry.value.partition(":")
    pytest_script = venv / "bin" / "pytest"
    pytest_script.write_text(f"#!{python}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n")
    pytest_script.chmod(0o755)
    code, where = _run(python, "-c", "import vlmdiag.plugin, vlmdiag.diagnostics; print(vlmdiag.plugin.__file__)",
                       cwd=root, env=env)
    assert code == 0 and where.startswith(str(venv)), where
    return pytest_script, env


def _tree_hash(folder: Path) -> str:
    """Every path under ``folder`` with its content: any file written, changed or removed shows."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_installed_wheel_runs_the_packaged_diagnostics_from_any_folder(installed, planted, tmp_path):
    pytest_script, env = installed
    checkpoints = planted("paper")
    parent = Path(checkpoints["base"]).parent  # the triple's folder, where a wrong rootdir put .pytest_cache
    assert not tmp_path.is_relative_to(parent)
    project = tmp_path / "training-repo"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "training-repo"\nversion = "0"\n\n'
                                            '[tool.pytest.ini_options]\naddopts = "-rs"\n')
    (project / "tests" / "test_own.py").write_text("def test_the_users_own_test():\n    assert False\n")
    before = _tree_hash(parent)

    # The space form, absolute paths outside the project: the project's rootdir and ini file, the
    # nine packaged diagnostics with the packaged thresholds, not the project's own tests.
    report = tmp_path / "reports" / "run.json"
    report.parent.mkdir()
    code, out = _run(pytest_script, "--base", checkpoints["base"], "--rl", checkpoints["rl"],
                     "--origin", checkpoints["origin"], "--report-json", report, "-p", "no:randomly",
                     cwd=project, env=env)
    assert code == 0, out  # the weight claims reproduce, the inference ones are skipped: no gated failure
    assert f"rootdir: {project}" in out and "configfile: pyproject.toml" in out, out
    assert "SKIPPED" in out  # the project's addopts (-rs) took effect
    assert "test_the_users_own_test" not in out
    data = json.loads(report.read_text())
    assert len(data["claims"]) == CLAIMS
    assert Path(data["thresholds"]).is_relative_to(pytest_script.parents[1])  # the wheel's thresholds.yaml
    verdicts = {c["id"]: c["verdict"] for c in data["claims"]}
    assert verdicts["updates.rl_smaller_than_in"] == "reproduced"
    assert (project / ".pytest_cache").is_dir()  # pytest's cache went to the project
    assert _tree_hash(parent) == before

    # The '=' form; the project's own thresholds.yaml wins, and the gate rule sets the exit status.
    packaged = Path(data["thresholds"]).read_text()
    assert "max_log10_ratio: -1.0" in packaged
    (project / "thresholds.yaml").write_text(packaged.replace("max_log10_ratio: -1.0", "max_log10_ratio: -9.0"))
    code, out = _run(pytest_script, f"--base={checkpoints['base']}", f"--rl={checkpoints['rl']}",
                     f"--origin={checkpoints['origin']}", f"--report-json={report}", "-p", "no:randomly",
                     cwd=project, env=env)
    assert code == 1, out  # the gated updates.rl_smaller_than_in is not reproduced under -9
    data = json.loads(report.read_text())
    assert data["thresholds"] == str(project / "thresholds.yaml")
    assert {c["id"]: c["verdict"] for c in data["claims"]}["updates.rl_smaller_than_in"] == "not_reproduced"
    assert _tree_hash(parent) == before

    # A --base folder that does not exist is a usage error, even in the space form.
    code, out = _run(pytest_script, "--base", parent / "no-such-checkpoint", "--rl", checkpoints["rl"],
                     cwd=project, env=env)
    assert code == 4, out
    assert "no-such-checkpoint: checkpoint folder does not exist" in out
