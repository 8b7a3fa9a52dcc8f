"""The persistent results cache: what it stores, what makes it miss, and damage it survives."""

import json
import math
import os
import shutil

import numpy as np
import pytest

from vlmdiag import cache as cache_module
from vlmdiag.cache import CacheWarning, ResultsCache, canonical, content_digest, decode, encode
from pydantic import BaseModel

from vlmdiag.measure.tables import AbilityTable, AttentionComparison
from vlmdiag.runner import CheckpointCache, Plan, RecipeCheckpoints, Runner, register_plan
from vlmdiag.measure.abilities import ItemOutcome, score_abilities
from vlmdiag.measure.skip import SkipResult
from vlmdiag.measure.swap import PairSwapResult, SwapRun
from vlmdiag.measure.weights import weight_deltas


def same(a, b) -> bool:
    """Deep equality through the canonical description (arrays by dtype, shape and bytes)."""
    return type(a) is type(b) and json.dumps(canonical(a), sort_keys=True) == json.dumps(canonical(b), sort_keys=True)


def through_disk(value):
    return decode(json.loads(json.dumps(encode(value))))


@pytest.fixture(scope="module")
def spectra(planted):
    from vlmdiag.checkpoints import Checkpoint

    paths = planted("paper")
    return weight_deltas(Checkpoint(paths["base"]), Checkpoint(paths["rl"]), Checkpoint(paths["origin"]), spectra=True)


def ability_table():
    outcomes = [ItemOutcome("v1", "vqa", {"image": True, "black": False}, {"image": "3", "black": "1"}),
                ItemOutcome("v2", "vqa", {"image": True, "black": True}, {"image": "4", "black": "4"}),
                ItemOutcome("m1", "math_vqa", {"image": True}, {"image": "7"},
                            {"black_description": "no description"}),
                ItemOutcome("t1", "text_math", {"text": False}, {"text": "8"})]
    return AbilityTable({"IN": score_abilities(outcomes)}, ("Base stage left out: no --origin",))


def test_every_measurement_type_survives_the_disk_unchanged(spectra):
    run = SwapRun("3", "5", np.arange(4, dtype=np.int64), ("3", "5", "5", "5"), "from",
                  np.array([1, 2], dtype=np.int64), np.array([3], dtype=np.int64),
                  (np.array([4], dtype=np.int64),) * 4)
    attention = AttentionComparison(
        ("a", "b"), {"own": {"IN": np.array([[0.1, np.nan], [0.3, 0.4]]), "RL": np.zeros((2, 2))}},
        {"own": {"IN": np.ones((2, 2)) / 7, "RL": np.zeros((2, 2))}}, ("RL", "IN"))
    values = [spectra, ability_table(), attention,
              SkipResult(np.array([-1, 0, 1]), np.array([[True, False], [False, False], [True, True]]),
                         (("a", "b"),) * 3, ("t1", "t2")),
              [PairSwapResult("p1", "ocr", run, np.array([False, True, True, True]))]]
    for value in values:
        back = through_disk(value)
        assert same(back, value), type(value)
    # The details a plain JSON dump would lose: int dict keys, NaN/Inf, numpy dtypes, tuples.
    back = through_disk(spectra)
    stats = next(m.stats for m in back.matrices if m.stats.log_ratio)
    assert all(isinstance(k, int) for k in stats.log_ratio)
    assert back.matrices[0].stats.singular_values.dtype == spectra.matrices[0].stats.singular_values.dtype
    assert math.isnan(through_disk(attention).mass["own"]["IN"][0, 1])
    assert through_disk({"x": (1, math.inf)}) == {"x": (1, math.inf)}


def test_nothing_outside_vlmdiag_is_built_and_nothing_unsafe_is_stored():
    for payload in ({"__vlmdiag_type__": "dataclass", "class": "subprocess:Popen", "fields": {}},
                    {"__vlmdiag_type__": "dataclass", "class": "vlmdiag.cache:ResultsCache", "fields": {}},
                    {"__vlmdiag_type__": "ndarray", "dtype": "|O", "shape": [1], "data": ""},
                    {"__vlmdiag_type__": "pickle", "data": ""}):
        with pytest.raises(ValueError):
            decode(payload)
    import torch

    for value in (np.array([object()]), torch.zeros(2), object()):
        with pytest.raises(TypeError):
            encode(value)


def test_content_digest_follows_content_not_identity():
    from PIL import Image

    from vlmdiag.probes.types import AbilityItem

    def item(pixel):
        return AbilityItem("i", "vqa", "how many?", "3", image=Image.new("RGB", (4, 4), pixel))

    assert content_digest([item((0, 0, 0))]) == content_digest([item((0, 0, 0))])
    assert content_digest([item((0, 0, 0))]) != content_digest([item((0, 0, 1))])
    with pytest.raises(TypeError):
        content_digest(object())


def test_put_then_get_and_atomic_entries(tmp_path):
    store = ResultsCache(tmp_path)
    material = {"measurement": "m", "x": 1}
    assert store.get("m", material) == (False, None)
    path = store.put("m", material, {"a": np.arange(3)})
    hit, value = store.get("m", material)
    assert hit and np.array_equal(value["a"], np.arange(3))
    assert store.get("m", {**material, "x": 2}) == (False, None)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    info = store.info()
    assert info["entries"] == 1 and info["by_measurement"]["m"]["entries"] == 1
    assert store.clear() == 1 and store.info()["entries"] == 0


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "other key", "bad array"])
def test_a_damaged_entry_is_a_miss_with_a_warning_and_is_replaced(tmp_path, damage):
    store = ResultsCache(tmp_path)
    material = {"measurement": "m"}
    path = store.put("m", material, {"a": np.arange(3.0)})
    text = path.read_text()
    entry = json.loads(text)
    if damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\xff" * 40)
    elif damage == "empty":
        path.write_text("")
    elif damage == "other key":
        path.write_text(json.dumps({**entry, "key": "0" * 40}))
    else:
        entry["value"]["a"]["data"] = "not base64!"
        path.write_text(json.dumps(entry))
    with pytest.warns(CacheWarning, match="corrupt cache entry"):
        assert store.get("m", material) == (False, None)
    store.put("m", material, {"a": np.arange(3.0)})
    assert store.get("m", material)[0]


def test_ctrl_c_while_writing_leaves_no_entry_and_no_temporary_file(tmp_path, monkeypatch):
    store = ResultsCache(tmp_path)

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.put("m", {"measurement": "m"}, [1, 2, 3])
    assert list((tmp_path / "m").iterdir()) == []


def test_an_unwritable_cache_turns_itself_off_with_one_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = ResultsCache(blocker / "results")  # a folder below a file cannot be made
    with pytest.warns(CacheWarning, match="cannot write the results cache"):
        assert store.put("m", {"measurement": "m"}, 1) is None
    assert store.writable is False
    assert store.put("m", {"measurement": "m"}, 1) is None  # silent from then on


# --------------------------------------------------------------------------- the runner and keys


class ToySettings(BaseModel):
    n: int
    seed: int


class Counting:
    """A cheap registered measurement whose inputs a test can vary: ``toy`` reads the base and RL
    checkpoints, takes ``n`` and ``seed`` settings and probe items made from ``probe``."""

    calls = 0
    probe = "question"


@register_plan("toy", roles=("base", "rl"), settings=ToySettings)
def plan_toy(runner, s: ToySettings) -> Plan:
    def compute():
        Counting.calls += 1
        return {"n": s.n, "sum": float(np.random.default_rng(s.seed).normal(size=s.n).sum()),
                "fingerprint": runner.checkpoint("base").fingerprint}

    return Plan(("base", "rl"), compute, lambda: "cpu", probes=[Counting.probe, s.n])


@pytest.fixture
def triple(planted, tmp_path):
    """A private copy of a planted triple (tests change its bytes)."""
    paths = planted("paper")
    return {role: shutil.copytree(path, tmp_path / role) for role, path in paths.items()}


def evidence(paths, store):
    recipe = RecipeCheckpoints("r", str(paths["base"]), str(paths["rl"]), str(paths["origin"]))
    return Runner(recipe, CheckpointCache(), results=store)


def test_a_rerun_hits_and_each_input_that_changes_results_misses(triple, tmp_path, monkeypatch):
    store = ResultsCache(tmp_path / "cache")
    Counting.calls = 0
    first = evidence(triple, store).measure("toy", {"n": 3, "seed": 0})
    again = evidence(triple, store)
    assert again.measure("toy", {"n": 3, "seed": 0}) == first and Counting.calls == 1
    assert again.cache_log == [("toy", "hit")]

    def misses(**settings):
        before = Counting.calls
        e = evidence(triple, store)
        e.measure("toy", settings or {"n": 3, "seed": 0})
        return Counting.calls == before + 1 and e.cache_log == [("toy", "miss")]

    assert misses(n=4, seed=0) and misses(n=3, seed=1)  # settings
    monkeypatch.setattr(Counting, "probe", "another question")
    assert misses()  # probe content
    monkeypatch.undo()
    monkeypatch.setattr(cache_module, "code_fingerprint", lambda: "changed code")
    assert misses()  # vlmdiag's measuring code
    monkeypatch.undo()
    real = cache_module.environment_key
    monkeypatch.setattr(cache_module, "environment_key",
                        lambda device: {**real(device), "versions": {"torch": "0.0"}})
    assert misses()  # library versions
    monkeypatch.undo()
    assert not misses()  # back to the stored inputs: a hit again
    # One bit of RL's weights anywhere changes the key, even with size and times put back.
    from vlmdiag.checkpoints import Checkpoint

    weights = triple["rl"] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    fingerprint = Checkpoint(triple["rl"]).fingerprint
    data[len(data) * 3 // 32 + 4096 + 17] ^= 0x01
    stat = weights.stat()
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert Checkpoint(triple["rl"]).fingerprint != fingerprint
    assert misses()
    (triple["base"] / "generation_config.json").write_text("{}")  # a small file: by content
    assert misses()


def test_no_cache_means_no_reads_and_no_writes(triple, tmp_path):
    Counting.calls = 0
    e = evidence(triple, None)
    e.measure("toy", {"n": 2, "seed": 0})
    evidence(triple, None).measure("toy", {"n": 2, "seed": 0})
    assert Counting.calls == 2 and e.cache_log == [("toy", "off")]


def test_weight_norms_are_read_from_a_cached_spectral_pass(planted, tmp_path):
    store = ResultsCache(tmp_path)
    paths = planted("paper")
    recipe = RecipeCheckpoints("r", str(paths["base"]), str(paths["rl"]), str(paths["origin"]))
    spectral = Runner(recipe, CheckpointCache(), wanted={"weight_spectra"}, results=store)
    stored = spectral.measure("weight_deltas")
    assert spectral.cache_log == [("weight_spectra", "miss"), ("weight_deltas", "miss")]
    norms_only = Runner(recipe, CheckpointCache(), results=store)
    assert same(norms_only.measure("weight_deltas"), stored)
    assert norms_only.cache_log == [("weight_deltas", "hit")]


def test_cli_info_and_clear(tmp_path, monkeypatch, capsys):
    from vlmdiag.cli import main

    monkeypatch.setenv("VLMDIAG_CACHE_DIR", str(tmp_path))
    ResultsCache().put("weight_spectra", {"measurement": "weight_spectra"}, [1.0])
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "results") in out and "1 entries" in out and "weight_spectra" in out
    assert main(["cache", "clear"]) == 0
    assert "deleted 1 cached measurement " in capsys.readouterr().out
    assert ResultsCache().info()["entries"] == 0
    with pytest.raises(SystemExit):
        main(["cache", "frobnicate"])


def test_clear_deletes_only_its_own_files_and_never_in_a_checkpoint(tmp_path):
    """A cache root pointed at the wrong folder (one holding checkpoints and other files) loses
    nothing but vlmdiag's entries."""
    store = ResultsCache(tmp_path)
    entry = store.put("weight_spectra", {"measurement": "weight_spectra"}, [1.0])
    (entry.parent / "notes.json").write_text("{}")            # a user's file beside an entry
    checkpoint = tmp_path / "sft"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    twin = checkpoint / entry.name                              # named like an entry, inside a checkpoint
    twin.write_text("{}")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p != entry}
    assert store.entries() == [entry] and store.clear() == 1
    assert not entry.exists()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


# --------------------------------------------------------------------------- through pytest

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def run_suite(paths, report, cache_dir, *extra):
    import os
    import subprocess
    import sys

    env = {**os.environ, "VLMDIAG_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "diagnostics/test_updates.py",
                           f"--base={paths['base']}", f"--rl={paths['rl']}", f"--origin={paths['origin']}",
                           f"--report-json={report}", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(report.read_text()), proc.stdout + proc.stderr


def test_a_rerun_through_pytest_reads_the_cache_and_reports_the_same(planted, tmp_path):
    paths, cache_dir = planted("paper"), tmp_path / "cache"
    first, _ = run_suite(paths, tmp_path / "1.json", cache_dir)
    second, out = run_suite(paths, tmp_path / "2.json", cache_dir)
    assert first["cache"] == {"enabled": True, "dir": str(cache_dir / "results")}
    n = len(first["claims"])  # the weight claims of test_updates.py
    assert n >= 3 and [c["cache"]["from_cache"] for c in first["claims"]] == [False] * n
    assert [c["cache"]["from_cache"] for c in second["claims"]] == [True] * n
    assert f"cache: {n} of {n} measured claims read their measurements from" in out
    strip = lambda report: [{k: v for k, v in c.items() if k != "cache"} for c in report["claims"]]  # noqa: E731
    assert strip(first) == strip(second)  # verdicts, metrics, reasons: identical

    # --no-cache neither reads nor writes. (A damaged entry: test_a_damaged_entry_is_a_miss...)
    before = {p: p.stat().st_mtime_ns for p in ResultsCache(cache_dir / "results").entries()}
    fourth, out = run_suite(paths, tmp_path / "4.json", cache_dir, "--no-cache")
    assert fourth["cache"] == {"enabled": False, "dir": None}
    assert {status for c in fourth["claims"] for status in c["cache"]["measurements"].values()} == {"off"}
    assert {p: p.stat().st_mtime_ns for p in ResultsCache(cache_dir / "results").entries()} == before
    assert strip(fourth) == strip(first)


# --------------------------------------------------------------------------- concurrent workers

WORKER = """
import sys, time
from pathlib import Path
from vlmdiag.cache import ResultsCache

root, log = Path(sys.argv[1]), Path(sys.argv[2])
Path(sys.argv[3]).touch()  # started
def make():
    with log.open("a") as f:
        f.write("made\\n")
    time.sleep(1.5)  # long enough for the other process to arrive while this one measures
    return {"value": 42}
value, hit = ResultsCache(root).obtain("m", {"measurement": "m", "x": 1}, make)
print(value["value"], hit)
"""


def test_workers_needing_one_measurement_make_it_once(tmp_path):
    import subprocess
    import sys
    import time

    log = tmp_path / "made.log"
    procs = []
    for i in range(2):
        started = tmp_path / f"started{i}"
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "cache"), str(log), str(started)],
                                      stdout=subprocess.PIPE, text=True))
        while not started.exists():  # the second starts only once the first is running
            time.sleep(0.02)
    outs = sorted(p.communicate(timeout=120)[0].split() for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert log.read_text() == "made\n"  # one process measured ...
    assert outs == [["42", "False"], ["42", "True"]]  # ... the other waited and read its entry
    store = ResultsCache(tmp_path / "cache")
    assert store.info()["entries"] == 1 and store.clear() == 1
    assert not any((tmp_path / "cache").rglob("*.lock"))  # clear leaves no lock files


def test_a_failed_measurement_stores_nothing_and_frees_its_lock(tmp_path):
    store = ResultsCache(tmp_path)

    def broken():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        store.obtain("m", {"measurement": "m"}, broken)
    assert store.entries() == []
    assert store.obtain("m", {"measurement": "m"}, lambda: 7) == (7, False)  # not deadlocked
    assert store.obtain("m", {"measurement": "m"}, broken) == (7, True)
