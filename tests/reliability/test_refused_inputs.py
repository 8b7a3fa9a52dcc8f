"""Inputs refused before they can give a wrong verdict or hang (issue 12), end to end in this
process (pytester): overlapping safetensors byte ranges, a config whose layer count disagrees with
the weights, non-finite thresholds and absurd counts, FIFOs, malformed shard indexes and entries
pointing outside the checkpoint, control characters in names, ``--rl-frozen`` given twice.

Each is exit 4 with one ``ERROR: <file>: <problem>`` line, no traceback, no checkpoint byte changed
(hashed before and after) and no hang (a watchdog unblocks a FIFO reader and records it).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file

from reliability_helpers import ROOT, copy, error_line, roles, untouched
from reliability_helpers import run_diagnostics as run

pytest_plugins = ["pytester"]

USAGE_ERROR = 4


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


# ----------------------------------------------------------------------------- options

def test_rl_frozen_twice_for_one_region_is_an_error(triple, pytester):
    code, out = run(pytester, *roles(triple), f"--rl-frozen=Late={triple['rl']}", f"--rl-frozen=late={triple['base']}",
                    "--collect-only")
    line = error_line(out)
    assert code == USAGE_ERROR and line == (f"ERROR: --rl-frozen Late is given twice ({str(triple['rl'])!r} and "
                                            f"{str(triple['base'])!r}); give each region one checkpoint"), line
