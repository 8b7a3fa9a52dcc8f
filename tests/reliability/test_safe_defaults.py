"""Safe defaults and determinism (issue 7).

* ``trust_remote_code`` is off unless ``--trust-remote-code`` is passed; no pickle is loaded
  except tensors through ``weights_only`` (and only under ``--allow-pickle``).
* A whole run never writes into a checkpoint folder: bytes, modification times and listings of
  every checkpoint folder are the same before and after (the results cache and the report go
  elsewhere).
* Two runs on the same inputs give identical reports apart from the creation time, the
  environment block and the results-cache bookkeeping. The tolerance is zero: on one machine
  (same torch build and thread count) every verdict, reason, interval and per-layer metric is
  bit-identical, since the weight pass is deterministic fp32 arithmetic and every bootstrap is
  seeded; the organism's inference claims decode greedily, so they are identical too.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from vlmdiag.claims import all_claims

from reliability_helpers import DIAGNOSTICS, ROOT, comparable, run_subprocess, snapshot

# ----------------------------------------------------------------------------- what the code may load


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_the_source_loads_no_pickle_and_trusts_no_remote_code():
    """Every ``torch.load`` passes ``weights_only=True``; nothing calls pickle/joblib/dill loaders
    or ``numpy.load`` with pickles allowed; no call hard-codes ``trust_remote_code=True``."""
    problems = []
    for path in sorted((ROOT / "vlmdiag").rglob("*.py")):
        for call, name in _calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{call.lineno}: {name}"
            keywords = {k.arg: k.value for k in call.keywords}
            if name.endswith("torch.load"):
                value = keywords.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{where} without weights_only=True")
            if name.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "cloudpickle") and "load" in name:
                problems.append(f"{where} loads a pickle")
            allow = keywords.get("allow_pickle")
            if isinstance(allow, ast.Constant) and allow.value is True:
                problems.append(f"{where} with allow_pickle=True")
            trust = keywords.get("trust_remote_code")
            if isinstance(trust, ast.Constant) and trust.value is True:
                problems.append(f"{where} with trust_remote_code=True")
    assert not problems, "\n".join(problems)


def test_trust_remote_code_reaches_the_model_loader_only_when_asked(monkeypatch, planted):
    import vlmdiag.runtime.model as model
    from vlmdiag.runner import CheckpointCache, RecipeCheckpoints as Recipe, Runner as Evidence

    seen = []
    monkeypatch.setattr(model, "load_model", lambda path, **kw: seen.append(kw.get("trust_remote_code")))
    paths = planted("paper")
    recipe = Recipe("main", str(paths["base"]), str(paths["rl"]))
    assert CheckpointCache().trust_remote_code is False and CheckpointCache().allow_pickle is False
    for flag in (False, True):
        Evidence(recipe, CheckpointCache(trust_remote_code=flag)).loaded("base")
    assert seen == [False, True]


# ----------------------------------------------------------------------------- whole runs


def _options(paths: dict) -> list[str]:
    return [f"--origin={paths['origin']}", f"--base={paths['base']}", f"--rl={paths['rl']}"]


@pytest.fixture(scope="module")
def planted_runs(planted, tmp_path_factory):
    """Every diagnostic on the planted triple, twice, in fresh processes: run 1 with the results
    cache on (in a temporary cache folder), run 2 with ``--no-cache``, so both measure."""
    paths = planted("paper")
    before = {role: snapshot(path) for role, path in paths.items()}
    runs = []
    for number, extra in enumerate([[], ["--no-cache"]], 1):
        out = tmp_path_factory.mktemp(f"planted-run{number}")
        code, text = run_subprocess(DIAGNOSTICS, *_options(paths), f"--report-json={out / 'report.json'}", *extra,
                                    env={"VLMDIAG_CACHE_DIR": str(out / "cache")})
        runs.append({"code": code, "output": text, "folder": out})
    return {"paths": paths, "before": before, "after": {role: snapshot(p) for role, p in paths.items()}, "runs": runs}


def test_a_full_run_never_writes_into_the_checkpoint_folders(planted_runs):
    for run in planted_runs["runs"]:
        assert run["code"] == 0, run["output"]
    assert planted_runs["after"] == planted_runs["before"]


def test_a_full_run_leaves_only_the_report_and_its_plots(planted_runs):
    for run in planted_runs["runs"]:
        names = sorted(p.name for p in run["folder"].iterdir() if p.name != "cache")
        assert names == ["report.json", "report_plots"]
        assert all(p.suffix == ".png" for p in (run["folder"] / "report_plots").iterdir())


def test_two_runs_give_identical_verdicts_and_metrics(planted_runs):
    first, second = (json.loads((run["folder"] / "report.json").read_text()) for run in planted_runs["runs"])
    verdicts = {(c["id"], c["verdict"]) for c in first["claims"]}
    # weights measured; inference needs a tokenizer; the planted RL update is dense (rank 2), not sparse
    assert {v for i, v in verdicts if i != "updates.rl_sparse"} == {"reproduced", "skipped"}
    assert ("updates.rl_sparse", "not_reproduced") in verdicts
    assert comparable(first) == comparable(second)  # bit-identical numbers (JSON keeps every float digit)


@pytest.mark.slow
def test_the_fast_organism_runs_twice_identically_without_touching_its_folders(tmp_path):
    """Every claim, inference included, on the ``fast`` organism (built into a temporary cache)."""
    env = {"VLMDIAG_ORGANISM_RECIPE": "fast", "VLMDIAG_CACHE_DIR": str(tmp_path / "cache")}
    build = run_subprocess_python("from vlmdiag.organism import checkpoint_path; "
                                  "print(checkpoint_path('base', progress=False).parent)", env)
    entry = Path(build.strip().splitlines()[-1])
    before = snapshot(entry)
    options = ["--origin=organism:base", "--base=organism:in", "--rl=organism:rl",
               "--rl-frozen=Late=organism:rl-frozen-late", "--report-only"]
    reports = []
    for number, extra in enumerate([[], ["--no-cache"]], 1):
        report = tmp_path / f"run{number}" / "report.json"
        report.parent.mkdir()
        code, out = run_subprocess(DIAGNOSTICS, *options, *extra, f"--report-json={report}", env=env, timeout=3000)
        assert code == 0, out
        reports.append(json.loads(report.read_text()))
    assert snapshot(entry) == before
    claims = {c["id"]: c for c in reports[0]["claims"]}
    assert len(claims) == len(all_claims())
    # The fast recipe's GRPO steps learn nothing, so its RL equals IN (bench/RESULTS.md): the weight
    # claims are errors that say so; every other claim must reach a verdict.
    errors = {i: c["reason"] for i, c in claims.items() if c["verdict"] == "error"}
    assert set(errors) <= {"updates.energy_mid", "updates.rl_smaller_than_in", "updates.rl_steeper_mid_late"}, errors
    assert all(r.startswith("ValueError: ") and "\n" not in r for r in errors.values()), errors
    assert comparable(reports[0]) == comparable(reports[1])


def run_subprocess_python(code: str, env: dict) -> str:
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800,
                          env={**os.environ, **env}, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout
