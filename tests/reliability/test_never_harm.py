"""Never harm a checkpoint or a report (issue 12), end to end: ``pytest diagnostics/test_updates.py
--base ... --rl ...`` with one bad input each, in this process (pytester).

Each bad input ends in exit 4 with one ``ERROR: <file>: <problem>`` line (or a report beside the old
one, for a run that does not finish), with no traceback, no byte of any checkpoint changed and
nothing created in a checkpoint folder (every file is hashed before and after), and no hang.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file

from reliability_helpers import ROOT, UPDATES, copy, error_line, snapshot

pytest_plugins = ["pytester"]

USAGE_ERROR = 4


@pytest.fixture(scope="module")
def triple(planted):
    return planted("paper")


def run(pytester, *args, plugins=()) -> tuple[int, str]:
    """``pytest diagnostics/test_updates.py ARGS`` in this process; exit code and all output."""
    result = pytester.runpytest_inprocess(str(UPDATES), f"--rootdir={ROOT}", "-p", "no:randomly",
                                          "-p", "no:cacheprovider", *map(str, args), plugins=list(plugins),
                                          no_reraise_ctrlc=True)
    out = "\n".join(result.outlines + result.errlines)
    assert "Traceback" not in out and "INTERNALERROR" not in out or plugins, out
    return int(result.ret), out


def roles(paths: dict, **replace) -> list[str]:
    paths = {**paths, **replace}
    return [f"--{role}={paths[role]}" for role in ("origin", "base", "rl") if paths.get(role)]


@contextmanager
def untouched(*folders: Path):
    """Asserts that no file under ``folders`` changed (bytes, mtime) and that nothing appeared."""
    before = [snapshot(folder) for folder in folders]
    yield
    assert [snapshot(folder) for folder in folders] == before


@pytest.fixture
def rl_copy(triple, tmp_path):
    return copy(triple["rl"], tmp_path / "rl")


# ----------------------------------------------------------------------------- outputs inside a checkpoint

def _hub_snapshot(triple, tmp_path) -> tuple[Path, Path]:
    """A Hugging Face cache layout: ``snapshots/x/model.safetensors`` links to ``blobs/w``."""
    snap, blob = tmp_path / "hub" / "snapshots" / "x", tmp_path / "hub" / "blobs" / "w"
    snap.mkdir(parents=True)
    blob.parent.mkdir()
    shutil.copy(triple["rl"] / "config.json", snap / "config.json")
    shutil.copy(triple["rl"] / "model.safetensors", blob)
    (snap / "model.safetensors").symlink_to(blob)
    return snap, blob


def _case(name, triple, tmp_path, monkeypatch):
    """(extra options, the path the ERROR line names, the checkpoint it names, folders to watch)."""
    out = tmp_path / "out"
    out.mkdir()
    rl = copy(triple["rl"], tmp_path / "rl")
    base, origin = triple["base"], triple["origin"]
    if name == "report over the weights":
        return [*roles(triple, rl=rl), f"--report-json={rl / 'model.safetensors'}"], rl / "model.safetensors", rl, [rl]
    if name == "report over config.json":
        return [*roles(triple, rl=rl), f"--report-json={rl / 'config.json'}"], rl / "config.json", rl, [rl]
    if name == "new report inside the folder":
        return [*roles(triple, rl=rl), f"--report-json={rl / 'r.json'}"], rl / "r.json", rl, [rl]
    if name == "report symlinked to the weights":
        (out / "r.json").symlink_to(rl / "model.safetensors")
        return [*roles(triple, rl=rl), f"--report-json={out / 'r.json'}"], out / "r.json", rl, [rl]
    if name == "report in a folder linked into the checkpoint":
        (out / "into").symlink_to(rl, target_is_directory=True)
        return [*roles(triple, rl=rl), f"--report-json={out / 'into' / 'r.json'}"], out / "into" / "r.json", rl, [rl]
    if name == "plots folder linked into the checkpoint":
        (out / "r_plots").symlink_to(rl, target_is_directory=True)
        return [*roles(triple, rl=rl), f"--report-json={out / 'r.json'}"], out / "r_plots", rl, [rl]
    if name == "report inside --origin":
        mine = copy(origin, tmp_path / "origin")
        return [*roles(triple, origin=mine), f"--report-json={mine / 'r.json'}"], mine / "r.json", mine, [mine]
    if name == "report inside --rl-frozen":
        frozen = copy(triple["rl"], tmp_path / "frozen")
        return ([*roles(triple), f"--rl-frozen=Late={frozen}", f"--report-json={frozen / 'r.json'}"],
                frozen / "r.json", frozen, [frozen])
    if name == "report inside a --recipe checkpoint":
        return ([f"--recipe=other={base},{rl},{origin}", f"--report-json={rl / 'r.json'}"], rl / "r.json", rl, [rl])
    if name == "report inside an organism: stage's folder":
        import vlmdiag.organism

        monkeypatch.setattr(vlmdiag.organism, "resolve_spec", lambda spec: rl if spec == "organism:rl" else None)
        return [*roles(triple, rl="organism:rl"), f"--report-json={rl / 'r.json'}"], rl / "r.json", rl, [rl]
    if name == "report over a hub snapshot's blob":
        snap, blob = _hub_snapshot(triple, tmp_path)
        return [*roles(triple, rl=snap), f"--report-json={blob}"], blob, snap, [snap, blob.parent]
    if name == "results cache inside the checkpoint":
        monkeypatch.setenv("VLMDIAG_CACHE_DIR", str(rl))
        return [*roles(triple, rl=rl), f"--report-json={out / 'r.json'}"], rl / "results", rl, [rl]
    if name == "results cache holding the checkpoint":
        holder = tmp_path / "cache"
        inner = copy(triple["rl"], holder / "results" / "weight_deltas")
        monkeypatch.setenv("VLMDIAG_CACHE_DIR", str(holder))
        return [*roles(triple, rl=inner), f"--report-json={out / 'r.json'}"], holder / "results", inner, [inner]
    raise AssertionError(name)


def _holds(case: str) -> str:
    return "holds" if case == "results cache holding the checkpoint" else "lies inside"


OUTPUT_CASES = ["report over the weights", "report over config.json", "new report inside the folder",
                "report symlinked to the weights", "report in a folder linked into the checkpoint",
                "plots folder linked into the checkpoint", "report inside --origin", "report inside --rl-frozen",
                "report inside a --recipe checkpoint", "report inside an organism: stage's folder",
                "report over a hub snapshot's blob", "results cache inside the checkpoint",
                "results cache holding the checkpoint"]


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_outputs_never_land_inside_a_checkpoint(case, triple, tmp_path, pytester, monkeypatch):
    args, path, checkpoint, watched = _case(case, triple, tmp_path, monkeypatch)
    with untouched(*watched, triple["base"], triple["origin"]):
        code, out = run(pytester, *args)
    line = error_line(out)
    assert code == USAGE_ERROR, out
    assert line.startswith(f"ERROR: {path}: ") and f"{_holds(case)} the checkpoint {checkpoint}; " in line, line
    assert "never writes into a checkpoint folder" in line
    assert (tmp_path / "out" / "r.json").is_symlink() or not (tmp_path / "out" / "r.json").exists()


def test_the_same_run_with_the_report_elsewhere_writes_a_complete_report(triple, tmp_path, pytester):
    report = tmp_path / "r.json"
    with untouched(triple["rl"], triple["base"], triple["origin"]):
        code, out = run(pytester, *roles(triple), f"--report-json={report}")
    assert code == 0, out
    assert json.loads(report.read_text())["complete"] is True
    assert f"report: {report}" in out


# ----------------------------------------------------------------------------- not a regular file

def _device(path: Path) -> bool:
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
        return True
    except (PermissionError, AttributeError):
        return False


@pytest.mark.parametrize("kind", ["FIFO", "device node", "symlink to a FIFO"])
def test_a_report_path_that_is_not_a_regular_file_is_refused(kind, triple, tmp_path, pytester):
    target = tmp_path / "r.json"
    if kind == "device node":
        if not _device(target):
            pytest.skip("cannot make a device node here (needs CAP_MKNOD)")
    elif kind == "FIFO":
        os.mkfifo(target)
    else:
        os.mkfifo(tmp_path / "fifo")
        target.symlink_to(tmp_path / "fifo")
    before = snapshot(tmp_path)
    code, out = run(pytester, *roles(triple), f"--report-json={target}")
    line = error_line(out)
    assert code == USAGE_ERROR and line.startswith(f"ERROR: {target}: --report-json is a ")
    assert ("FIFO" if "FIFO" in kind else "character device") in line
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- interrupted or crashed runs

class Interrupt:
    """Ctrl-C while the second claim runs."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item):
        if "orders_of_magnitude" in item.name:
            raise KeyboardInterrupt


class Crash:
    """An internal error (a bug in a plugin) as the second claim starts."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid, location):
        if "orders_of_magnitude" in nodeid:
            raise RuntimeError("a plugin bug")


@pytest.mark.parametrize("fault, code, words", [(Interrupt, 2, "was interrupted"),
                                                 (Crash, 3, "crashed (internal error)")], ids=["ctrl-c", "crash"])
def test_an_unfinished_run_leaves_the_previous_report_and_writes_beside_it(fault, code, words, triple, tmp_path,
                                                                            pytester):
    report = tmp_path / "r.json"
    report.write_text('{"old": true}')
    (tmp_path / "r_plots").mkdir()
    (tmp_path / "r_plots" / "old.png").write_bytes(b"old plot")
    before = snapshot(tmp_path)
    with untouched(triple["rl"], triple["base"], triple["origin"]):
        got, out = run(pytester, *roles(triple), f"--report-json={report}", plugins=[fault()])
    assert got == code, out
    beside = tmp_path / "r.incomplete.json"
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k not in (".", beside.name)} == {
        k: v for k, v in before.items() if k != "."}  # the old report and plots, byte for byte
    partial = json.loads(beside.read_text())
    assert partial["complete"] is False and [c["id"] for c in partial["claims"]] == ["updates.energy_mid"]
    assert f"the run {words}: the previous report {report} is untouched" in out, out
    assert f"are in {beside}, marked \"complete\": false" in out


def test_a_run_stopped_by_maxfail_leaves_the_previous_report(planted, tmp_path, pytester):
    """``-x``: the gated energy claim fails on uniform updates, and the other claims never run."""
    report = tmp_path / "r.json"
    report.write_text('{"old": true}')
    code, out = run(pytester, *roles(planted("uniform")), f"--report-json={report}", "-x")
    assert code == 1 and json.loads(report.read_text()) == {"old": True}, out
    partial = json.loads((tmp_path / "r.incomplete.json").read_text())
    assert partial["complete"] is False and [c["verdict"] for c in partial["claims"]] == ["not_reproduced"]
    assert "the run stopped early (stopping after 1 failures): the previous report" in out, out


def test_a_deeply_nested_thresholds_file_is_one_line_and_keeps_the_report(triple, tmp_path, pytester):
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("schema_version: 1\nclaims: " + "[" * 5000 + "]" * 5000 + "\n")
    report = tmp_path / "r.json"
    report.write_text('{"old": true}')
    code, out = run(pytester, *roles(triple), f"--thresholds={thresholds}", f"--report-json={report}")
    assert code == USAGE_ERROR and f"ERROR: {thresholds}: nested too deeply" in error_line(out), out
    assert json.loads(report.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "thresholds.yaml"]


# ----------------------------------------------------------------------------- safetensors headers, config.json

def _rewrite_header(file: Path, edit) -> None:
    data = file.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    edit(header)
    raw = json.dumps(header).encode()
    file.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length:])


def _overlap(header):
    """Layer 4's up_proj reads layer 3's bytes (same size): in bounds, right length, overlapping."""
    a, b = (f"model.layers.{i}.mlp.up_proj.weight" for i in (3, 4))
    header[b]["data_offsets"] = list(header[a]["data_offsets"])


def _swap_order(header):
    """Two tensors of one size exchange their byte ranges: still a tiling (the library accepts it)."""
    a, b = (f"model.layers.{i}.mlp.up_proj.weight" for i in (3, 4))
    header[a]["data_offsets"], header[b]["data_offsets"] = header[b]["data_offsets"], header[a]["data_offsets"]


def test_overlapping_tensor_bytes_are_refused_as_the_safetensors_library_refuses_them(triple, rl_copy, pytester):
    from safetensors import SafetensorError, safe_open

    weights = rl_copy / "model.safetensors"
    _rewrite_header(weights, _overlap)
    with pytest.raises(SafetensorError):
        safe_open(str(weights), "pt")
    with untouched(rl_copy):
        code, out = run(pytester, *roles(triple, rl=rl_copy))
    line = error_line(out)
    assert code == USAGE_ERROR and line.startswith(f"ERROR: {weights}: corrupt safetensors header entry ")
    assert "overlaps the tensor before it" in line or "unused" in line, line


def test_tensors_stored_out_of_order_are_read_from_their_own_bytes(triple, rl_copy):
    from vlmdiag.checkpoints import Checkpoint

    weights = rl_copy / "model.safetensors"
    expected = load_file(weights)
    _rewrite_header(weights, _swap_order)
    library = load_file(weights)  # accepted: the byte ranges still tile the data
    ours = Checkpoint(rl_copy)
    for name in ("model.layers.3.mlp.up_proj.weight", "model.layers.4.mlp.up_proj.weight"):
        canonical = name.replace("model.layers.", "model.language_model.layers.")
        assert ours.get(canonical).equal(library[name]) and not library[name].equal(expected[name])


@pytest.mark.parametrize("layers", [5, 7])
def test_a_config_layer_count_that_disagrees_with_the_weights_is_a_usage_error(layers, triple, tmp_path, pytester):
    paths = {role: copy(triple[role], tmp_path / role) for role in ("origin", "base", "rl")}
    for folder in paths.values():  # all three agree with each other, not with their weights
        config = json.loads((folder / "config.json").read_text())
        config["text_config"]["num_hidden_layers"] = layers
        (folder / "config.json").write_text(json.dumps(config))
    with untouched(*paths.values()):
        code, out = run(pytester, *roles(paths))
    line = error_line(out)
    assert code == USAGE_ERROR and "config.json: text_config.num_hidden_layers is " f"{layers}" in line, line
    assert "but the weights hold 6 LLM decoder layer(s) (layers 0-5)" in line


# ----------------------------------------------------------------------------- thresholds.yaml

def _thresholds(tmp_path: Path, claim: str, key: str, value: str) -> tuple[Path, int]:
    data = yaml.safe_load((ROOT / "thresholds.yaml").read_text())
    data["claims"][claim][key] = "PLACEHOLDER"
    text = yaml.safe_dump(data, sort_keys=False).replace("PLACEHOLDER", value)
    path = tmp_path / "thresholds.yaml"
    path.write_text(text)
    lines = text.splitlines()
    start = lines.index(f"  {claim}:")
    return path, next(i for i, row in enumerate(lines[start:], start + 1) if row.strip().startswith(f"{key}:"))


@pytest.mark.parametrize("claim, key, value, problem", [
    ("updates.energy_mid", "min_mid_concentration", ".nan", "nan is not a finite number"),
    ("updates.rl_smaller_than_in", "max_log10_ratio", ".inf", "inf is not a finite number"),
    ("updates.rl_steeper_mid_late", "max_log_ratio_difference", "'-inf'", "-inf is not a finite number"),
    ("updates.rl_smaller_than_in", "bootstrap_resamples", str(10**12), f"{10**12} is outside the sane range 100..1000000"),
    ("attention.r2v_shift_mid_late", "n_items", str(10**9), f"{10**9} is outside the sane range 1..100000"),
    ("attention.r2v_shift_mid_late", "max_new_tokens", str(10**7), f"{10**7} is outside the sane range 1..32768"),
], ids=["nan", "inf", "-inf string", "bootstrap_resamples", "n_items", "max_new_tokens"])
def test_thresholds_must_be_finite_and_counts_sane(claim, key, value, problem, triple, tmp_path, pytester):
    path, number = _thresholds(tmp_path, claim, key, value)
    code, out = run(pytester, *roles(triple), f"--thresholds={path}", "--collect-only")
    line = error_line(out)
    assert code == USAGE_ERROR and line == f"ERROR: {path}:{number}: claims.{claim}.{key}: {problem}", line


# ----------------------------------------------------------------------------- FIFOs (no hang)

def _fifo_instead_of(folder: Path, name: str) -> Path:
    target = folder / name
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    return target


@contextmanager
def watchdog(fifo: Path, after: float = 60.0):
    """If the run still waits on ``fifo`` after ``after`` seconds, open its write end (which lets
    a blocked reader go on, to EOF) and record the hang."""
    done, hung = threading.Event(), []

    def watch():
        if done.wait(after):
            return
        while not done.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                hung.append(True)
            except OSError:  # ENXIO: no reader (yet)
                pass
            done.wait(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield hung
    finally:
        done.set()
        thread.join()


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json", "pytorch_model.bin"])
def test_a_fifo_in_a_checkpoint_is_refused_without_waiting(name, triple, rl_copy, pytester):
    extra = []
    if name == "pytorch_model.bin":
        (rl_copy / "model.safetensors").unlink()
        extra = ["--allow-pickle"]
    fifo = _fifo_instead_of(rl_copy, name)
    with untouched(rl_copy), watchdog(fifo) as hung:
        code, out = run(pytester, *roles(triple, rl=rl_copy), *extra)
    assert not hung, "vlmdiag waited on a FIFO"
    assert code == USAGE_ERROR and error_line(out).startswith(f"ERROR: {fifo}: is a FIFO, not a regular file"), out


# ----------------------------------------------------------------------------- shard indexes

def _shard(folder: Path) -> Path:
    """Rewrite the weights as two shards plus an index; returns the index."""
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(state)
    weight_map = {}
    for file, part in (("model-00001-of-00002.safetensors", names[::2]), ("model-00002-of-00002.safetensors", names[1::2])):
        save_file({n: state[n] for n in part}, folder / file, metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def _edit_index(index: Path, edit) -> None:
    data = json.loads(index.read_text())
    edit(data)
    index.write_text(json.dumps(data))


MALFORMED = {
    "weight_map is a list": lambda d: d.update(weight_map=list(d["weight_map"])),
    "weight_map missing": lambda d: d.pop("weight_map"),
    "an entry is a number": lambda d: d["weight_map"].update({next(iter(d["weight_map"])): 2}),
    "an entry is null": lambda d: d["weight_map"].update({next(iter(d["weight_map"])): None}),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_shard_index_is_one_line(case, triple, rl_copy, pytester):
    index = _shard(rl_copy)
    _edit_index(index, MALFORMED[case])
    with untouched(rl_copy):
        code, out = run(pytester, *roles(triple, rl=rl_copy))
    line = error_line(out)
    assert code == USAGE_ERROR and line.startswith(f"ERROR: {index}") and "malformed shard index" in line, line


@pytest.mark.parametrize("where", ["../../elsewhere/model-00002-of-00002.safetensors", "absolute",
                                   "../pytorch_model.bin"])
def test_shard_index_entries_outside_the_folder_are_refused(where, triple, tmp_path, pytester):
    rl = copy(triple["rl"], tmp_path / "a" / "rl")
    index = _shard(rl)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(rl / "model-00002-of-00002.safetensors", elsewhere)  # readable, so the old code read it
    (tmp_path / "a" / "pytorch_model.bin").write_bytes(b"pickle")
    shard = str(elsewhere / "model-00002-of-00002.safetensors") if where == "absolute" else where
    _edit_index(index, lambda d: d["weight_map"].update(
        {k: shard for k, v in d["weight_map"].items() if v == "model-00002-of-00002.safetensors"}))
    with untouched(rl):
        code, out = run(pytester, *roles(triple, rl=rl))
    line = error_line(out)
    assert code == USAGE_ERROR and line.startswith(f"ERROR: {index}: weight_map[")
    assert f"shard {shard!r} points outside the checkpoint folder; refused" in line and "pickle" not in line, line


# ----------------------------------------------------------------------------- what reaches the terminal

def test_control_characters_in_a_tensor_name_are_escaped(triple, rl_copy, pytester):
    weights = rl_copy / "model.safetensors"
    state = load_file(weights)
    crafted = "model.layers.0.\x1b[2K\rERROR: all checks passed\x07"
    state[crafted] = state["model.layers.0.mlp.up_proj.weight"].clone()
    save_file(state, weights, metadata={"format": "pt"})
    code, out = run(pytester, *roles(triple, rl=rl_copy))
    line = error_line(out)
    assert code == USAGE_ERROR and "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "model.layers.0.\\x1b[2K\\rERROR: all checks passed\\x07" in line, line


def test_a_newline_in_a_path_keeps_the_error_on_one_line(triple, tmp_path, pytester):
    rl = copy(triple["rl"], tmp_path / "rl\nERROR: this line is fake")
    (rl / "config.json").unlink()
    code, out = run(pytester, *roles(triple, rl=rl))
    line = error_line(out)
    assert code == USAGE_ERROR and "rl\\nERROR: this line is fake: no config.json" in line, line


# ----------------------------------------------------------------------------- writing the report

class PlotsBlocked:
    """Something takes the plots folder's name after the checks (a file where the folder goes)."""

    def __init__(self, folder: Path):
        self.folder = folder

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session):
        self.folder.write_text("not a folder")


def test_when_only_the_plots_fail_the_message_says_the_report_was_written(triple, tmp_path, pytester):
    report = tmp_path / "r.json"
    code, out = run(pytester, *roles(triple), f"--report-json={report}", plugins=[PlotsBlocked(tmp_path / "r_plots")])
    assert code == USAGE_ERROR, out
    assert json.loads(report.read_text())["complete"] is True
    line = error_line(out)
    assert line == (f"ERROR: --report-json {report}: the report was written, but not its plots: cannot write "
                    f"{tmp_path / 'r_plots'} (File exists)"), line


def test_rl_frozen_twice_for_one_region_is_an_error(triple, pytester):
    code, out = run(pytester, *roles(triple), f"--rl-frozen=Late={triple['rl']}", f"--rl-frozen=late={triple['base']}",
                    "--collect-only")
    line = error_line(out)
    assert code == USAGE_ERROR and line == (f"ERROR: --rl-frozen Late is given twice ({str(triple['rl'])!r} and "
                                            f"{str(triple['base'])!r}); give each region one checkpoint"), line


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_reports_plots_and_cache_entries_follow_the_umask(triple, tmp_path, pytester, monkeypatch, umask_027):
    monkeypatch.setenv("VLMDIAG_CACHE_DIR", str(tmp_path / "cache"))
    report = tmp_path / "out" / "r.json"
    report.parent.mkdir()
    code, out = run(pytester, *roles(triple), f"--report-json={report}")
    assert code == 0, out
    written = [report, *(tmp_path / "out" / "r_plots").iterdir(), *(tmp_path / "cache" / "results").rglob("*.json")]
    assert len(written) > 3 and {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o640}
    report.chmod(0o604)  # an existing report keeps the mode its owner gave it
    code, out = run(pytester, *roles(triple), f"--report-json={report}")
    assert code == 0 and stat.S_IMODE(report.stat().st_mode) == 0o604
