"""The catalog of bad inputs (issue 7), end to end: ``pytest diagnostics/... --base ... --rl ...``
with one bad input each. A configuration problem stops the run before any claim with pytest's
usage-error exit code 4 and one ``ERROR:`` line that names the file and the problem; a weight that
holds NaN/Inf is an ``error`` verdict (exit 1) in a report that is still written.

The runs happen in this process (pytester), which keeps the catalog fast; the subprocess runs of
``tests/core/test_pytest_run.py`` and ``test_safe_defaults.py`` cover the real command line.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from reliability_helpers import ATTENTION, ROOT, copy, error_line, run_inprocess, runnable_checkpoint

pytest_plugins = ["pytester"]

USAGE_ERROR = 4


@pytest.fixture(scope="module")
def triple(planted):
    return planted("paper")


def main(paths: dict, **replace) -> list[str]:
    """``--origin/--base/--rl`` options for a triple, with some roles replaced."""
    paths = {**paths, **replace}
    return [f"--{role}={paths[role]}" for role in ("origin", "base", "rl") if paths.get(role)]


# ----------------------------------------------------------------------------- damaging a checkpoint copy

def _empty(folder: Path):
    shutil.rmtree(folder)
    folder.mkdir()


def _no_weights(folder: Path):
    (folder / "model.safetensors").unlink()


def _pickle_only(folder: Path):
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")


def _corrupt_header(folder: Path):
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[8:20] = b"not json!!!!"
    (folder / "model.safetensors").write_bytes(bytes(data))


def _sharded(folder: Path) -> list[Path]:
    """Rewrite the weights as two shards plus ``model.safetensors.index.json``."""
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for file, part in shards.items():
        save_file({n: state[n] for n in part}, folder / file, metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return [folder / f for f in shards]


def _truncated_shard(folder: Path):
    shard = _sharded(folder)[1]
    shard.write_bytes(shard.read_bytes()[:-64])


def _index_names_missing_shard(folder: Path):
    _sharded(folder)[1].unlink()


def _config(folder: Path, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def _other_architecture(folder: Path):
    _config(folder, architectures=["Qwen2VLForConditionalGeneration"], model_type="qwen2_vl")


def _unknown_architecture(folder: Path):
    _config(folder, architectures=["NopeForCausalLM"], model_type="nope")


def _config_not_json(folder: Path):
    (folder / "config.json").write_text('{"architectures": [')


DAMAGED_RL = {
    # case: (damage, text the ERROR line holds, the file it names: "folder", or a name inside it)
    "empty checkpoint folder": (_empty, "no config.json", "folder"),
    "no weights": (_no_weights, "no weights", "folder"),
    "pickle-only weights without --allow-pickle": (_pickle_only, "only pickle weights", "folder"),
    "corrupt safetensors header": (_corrupt_header, "corrupt safetensors header", "model.safetensors"),
    "truncated shard": (_truncated_shard, "truncated safetensors file", "model-00002-of-00002.safetensors"),
    "index names a missing shard": (_index_names_missing_shard, "names shard(s) that do not exist",
                                    "model.safetensors.index.json"),
    "config.json not JSON": (_config_not_json, "not valid JSON", "config.json"),
    "unsupported architecture": (_unknown_architecture, "unsupported architecture", "config.json"),
    "mismatched architectures": (_other_architecture, "architecture qwen2_5_vl vs qwen2_vl", "folder"),
}


@pytest.mark.parametrize("case", DAMAGED_RL, ids=list(DAMAGED_RL))
def test_damaged_checkpoint_is_a_usage_error_naming_the_file(case, triple, tmp_path, pytester):
    damage, expected, names = DAMAGED_RL[case]
    rl = copy(triple["rl"], tmp_path / "rl")
    damage(rl)
    code, out = run_inprocess(pytester, *main(triple, rl=rl))
    assert code == USAGE_ERROR, out
    line = error_line(out)
    assert expected in line and str(rl if names == "folder" else rl / names) in line, line
    assert "Traceback" not in out


def test_mismatched_layer_counts_and_shapes_name_the_tensors(planted, triple, pytester):
    code, out = run_inprocess(pytester, *main(triple, rl=planted("paper", num_layers=7)["rl"]))
    line = error_line(out)
    assert code == USAGE_ERROR and "6 vs 7 LLM layers" in line and "model.language_model.layers.6." in line
    wider = planted("paper", hidden=96)["rl"]
    code, out = run_inprocess(pytester, *main(triple, rl=wider))
    line = error_line(out)
    assert code == USAGE_ERROR and str(wider) in line and "differ in shape" in line and "[128, 64] vs [192, 96]" in line


def test_pickle_with_allow_pickle_never_runs_code(triple, tmp_path, pytester):
    """--allow-pickle reads tensors only (``weights_only``): a pickle that would run code is refused."""
    rl = copy(triple["rl"], tmp_path / "rl")
    _pickle_only(rl)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    state = torch.load(rl / "pytorch_model.bin", weights_only=True)
    state["extra"] = Payload()
    torch.save(state, rl / "pytorch_model.bin")
    code, out = run_inprocess(pytester, *main(triple, rl=rl), "--allow-pickle")
    line = error_line(out)
    assert code == USAGE_ERROR and "refused" in line and str(rl / "pytorch_model.bin") in line
    assert not marker.exists()


def test_nan_weights_are_an_error_verdict_in_a_written_report(triple, tmp_path, pytester):
    rl = copy(triple["rl"], tmp_path / "rl")
    state = load_file(rl / "model.safetensors")
    state["model.layers.3.mlp.up_proj.weight"][0, 0] = float("inf")
    save_file(state, rl / "model.safetensors", metadata={"format": "pt"})
    report = tmp_path / "report.json"
    code, out = run_inprocess(pytester, *main(triple, rl=rl), f"--report-json={report}")
    assert code == 1, out  # an error verdict fails its test
    claims = json.loads(report.read_text())["claims"]
    assert len(claims) == 3 and {c["verdict"] for c in claims} == {"error"}
    for claim in claims:
        assert str(rl) in claim["reason"] and "model.language_model.layers.3.mlp.up_proj.weight" in claim["reason"]
        assert "NaN/Inf" in claim["reason"] and "\n" not in claim["reason"]


# ----------------------------------------------------------------------------- inference inputs

@pytest.fixture(scope="module")
def runnable(tmp_path_factory):
    return runnable_checkpoint(tmp_path_factory.mktemp("runnable"))


def test_tokenizer_without_image_token_is_a_usage_error(runnable, tmp_path, pytester):
    broken = runnable_checkpoint(tmp_path / "noimage", image_token=False)
    code, out = run_inprocess(pytester, f"--base={runnable}", f"--rl={broken}", diagnostics=ATTENTION)
    line = error_line(out)
    assert code == USAGE_ERROR and str(broken) in line and "defines no image token" in line, out


def test_remote_code_needs_the_flag(runnable, tmp_path, pytester):
    remote = runnable_checkpoint(tmp_path / "remote", auto_map=True)
    code, out = run_inprocess(pytester, f"--base={runnable}", f"--rl={remote}", diagnostics=ATTENTION)
    line = error_line(out)
    assert code == USAGE_ERROR and str(remote / "config.json") in line and "--trust-remote-code" in line
    code, out = run_inprocess(pytester, f"--base={runnable}", f"--rl={remote}", "--trust-remote-code",
                              "--collect-only", diagnostics=ATTENTION)
    assert code == 0, out  # the inputs pass the checks; nothing ran (--collect-only)


# ----------------------------------------------------------------------------- specs, options, files

def test_hub_id_while_offline(triple, pytester, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out = run_inprocess(pytester, *main(triple, rl="some-org/not-downloaded-model"))
    line = error_line(out)
    assert code == USAGE_ERROR and "some-org/not-downloaded-model" in line and "offline" in line


@pytest.mark.parametrize("spec, expected", [
    ("organism:nope", "unknown organism stage 'nope'; valid stages: base, in, rl"),
    ("organism:rl@nope", "unknown organism recipe 'nope'; valid recipes:"),
], ids=["stage", "recipe"])
def test_unknown_organism_stage_or_recipe(spec, expected, triple, pytester):
    code, out = run_inprocess(pytester, *main(triple, rl=spec))
    assert code == USAGE_ERROR and expected in error_line(out)


def test_checkpoint_path_that_is_a_file(triple, tmp_path, pytester):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"")
    code, out = run_inprocess(pytester, *main(triple, rl=file))
    line = error_line(out)
    assert code == USAGE_ERROR and str(file) in line and "must be a folder" in line


def _thresholds(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((ROOT / "thresholds.yaml").read_text())
    text = edit(data)
    path = tmp_path / "thresholds.yaml"
    path.write_text(text if isinstance(text, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _typo(data):
    data["claims"]["updates.energy_mid"]["min_mid_concentratoin"] = 1.1


THRESHOLDS = {  # case: (edit, expected text; {line} is the line of the first line holding the key after "@")
    "malformed YAML": (lambda d: "claims: [\n", "not valid YAML"),
    "unknown key": (_typo, ":{line}: claims.updates.energy_mid.min_mid_concentratoin: Extra inputs are not "
                           "permitted@min_mid_concentratoin:"),
    "unknown claim": (lambda d: d["claims"].update({"updates.nope": {"gate": True}}),
                      ":{line}: unknown claim 'updates.nope'@updates.nope:"),
    "value out of range": (lambda d: d["claims"]["updates.energy_mid"].update(confidence=1.5),
                           ":{line}: claims.updates.energy_mid.confidence: Input should be less than 1@confidence: 1.5"),
    "not UTF-8": (lambda d: None, "not UTF-8 text"),
}


@pytest.mark.parametrize("case", THRESHOLDS, ids=list(THRESHOLDS))
def test_bad_thresholds_file_names_file_line_and_key(case, triple, tmp_path, pytester):
    edit, expected = THRESHOLDS[case]
    path = _thresholds(tmp_path, edit)
    if case == "not UTF-8":
        path.write_bytes(path.read_bytes() + b"\xff\n")
    if "@" in expected:
        expected, key = expected.split("@")
        number = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if key in text)
        expected = expected.format(line=number)
    code, out = run_inprocess(pytester, *main(triple), f"--thresholds={path}")
    line = error_line(out)
    assert code == USAGE_ERROR and f"{path}" in line and expected in line, line


def test_missing_thresholds_file(triple, tmp_path, pytester):
    code, out = run_inprocess(pytester, *main(triple), f"--thresholds={tmp_path / 'nope.yaml'}")
    assert code == USAGE_ERROR and f"{tmp_path / 'nope.yaml'}: cannot read the thresholds file" in error_line(out)


@pytest.mark.parametrize("args, expected", [
    (["--regions=3,9"], "cuts 3,9 do not split 6 decoder layers"),
    (["--regions=middle"], "--regions 'middle': expected paper, thirds, localized, or two increasing cuts A,B"),
    (["--recipe=oops"], "--recipe 'oops': expected NAME=BASE,RL[,ORIGIN]"),
    (["--rl-frozen=Top=x"], "--rl-frozen 'Top=x': expected [NAME:]REGION=CKPT with REGION one of Early, Mid, Late"),
], ids=["regions-out-of-range", "regions-malformed", "recipe", "rl-frozen"])
def test_bad_option_values(args, expected, triple, pytester):
    code, out = run_inprocess(pytester, *main(triple), *args)
    assert code == USAGE_ERROR and expected in error_line(out)


# ----------------------------------------------------------------------------- --report-json

def test_report_json_folder_missing_file_or_folder(triple, tmp_path, pytester):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = {tmp_path / "missing" / "r.json": "does not exist", a_file / "r.json": "does not exist",
             tmp_path: "is a folder; name a file"}
    for target, expected in cases.items():
        code, out = run_inprocess(pytester, *main(triple), f"--report-json={target}")
        line = error_line(out)
        assert code == USAGE_ERROR and str(target) in line and expected in line, line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root may write into a read-only (chmod 0555) folder; "
                           "test_report_json_on_a_read_only_file_system covers it")
def test_report_json_folder_not_writable(triple, tmp_path, pytester):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, out = run_inprocess(pytester, *main(triple), f"--report-json={folder / 'r.json'}")
    finally:
        folder.chmod(0o755)
    assert code == USAGE_ERROR and f"folder {folder} is not writable" in error_line(out)


READ_ONLY = Path("/proc/sys")  # mounted read-only in containers, and kernel-refused for most writes


@pytest.mark.skipif(not (READ_ONLY.is_dir() and not os.access(READ_ONLY, os.W_OK)),
                    reason=f"{READ_ONLY} is not a read-only folder here")
def test_report_json_on_a_read_only_file_system(triple, pytester):
    code, out = run_inprocess(pytester, *main(triple), f"--report-json={READ_ONLY / 'r.json'}")
    assert code == USAGE_ERROR and f"folder {READ_ONLY} is not writable" in error_line(out)


# ----------------------------------------------------------------------------- probe files and images
# (the loaders of users' probe copies: MATH-500, MathVista, descriptions, the paper's swap pairs)

def _png(path: Path, colour=(200, 20, 20)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (28, 28), colour).save(path)


def _math500(folder: Path, line: bytes) -> tuple:
    from vlmdiag.probes.math500 import load_math500

    path = folder / "test.jsonl"
    path.write_bytes(b'{"problem": "1+1?", "answer": "2"}\n' + line + b"\n")
    return path, lambda: load_math500(path)


def _mathvista(folder: Path, line: bytes) -> tuple:
    from vlmdiag.probes.mathvista import load_mathvista

    _png(folder / "images" / "1.png")
    path = folder / "testmini.jsonl"
    path.write_bytes(b'{"pid": "1", "question": "q?", "answer": "a", "image": "images/1.png", '
                     b'"metadata": {"category": "general-vqa"}}\n' + line + b"\n")
    return path, lambda: load_mathvista(path)


def _descriptions(folder: Path, line: bytes) -> tuple:
    from vlmdiag.probes.records import load_descriptions

    path = folder / "descriptions.jsonl"
    path.write_bytes(b'{"pid": "1", "description": "a red square"}\n' + line + b"\n")
    return path, lambda: load_descriptions(path)


def _swap_pairs(folder: Path, line: bytes) -> tuple:
    from vlmdiag.probes.vision_functionality import load_vision_functionality

    _png(folder / "counting" / "images" / "t.png")
    path = folder / "counting" / "data.jsonl"
    path.write_bytes(b'{"id": "c1", "task": "counting", "target_image": "images/t.png", "source_image": "images/t.png", '
                     b'"prompt": "How many?", "meta": {}}\n' + line + b"\n")
    return path, lambda: load_vision_functionality(folder)


LOADERS = {"math500": _math500, "mathvista": _mathvista, "descriptions": _descriptions, "swap-pairs": _swap_pairs}
BAD_LINES = {"not JSON": (b'{"pid": "2", ', "not valid JSON"), "not UTF-8": (b'{"pid": "\xff"}', "not UTF-8"),
             "not an object": (b"[1, 2]", "expected a JSON object"),
             "too deep": (b"[" * 100_000, "not valid JSON")}


@pytest.mark.parametrize("bad", BAD_LINES, ids=list(BAD_LINES))
@pytest.mark.parametrize("loader", LOADERS, ids=list(LOADERS))
def test_malformed_probe_line_names_file_and_line(loader, bad, tmp_path):
    from vlmdiag.errors import ProbeError

    line, expected = BAD_LINES[bad]
    path, load = LOADERS[loader](tmp_path, line)
    with pytest.raises(ProbeError) as info:
        load()
    message = str(info.value)
    assert message.startswith(f"{path}:2: ") and expected in message and "\n" not in message, message


def test_undecodable_images_are_skipped_and_counted(tmp_path):
    from vlmdiag.probes.mathvista import load_mathvista

    path, _ = _mathvista(tmp_path / "mv", b'{"pid": "2", "question": "q?", "answer": "a", "image": "images/2.png", '
                                          b'"metadata": {"category": "general-vqa"}}')
    (tmp_path / "mv" / "images" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    probes = load_mathvista(path)
    assert [item.id for item in probes.all_items()] == ["mathvista-1"]
    assert len(probes.skipped_items) == 1 and probes.skipped_items[0].startswith(f"{path}:2: image not decodable")

    path, load = _swap_pairs(tmp_path / "vf", b'{"id": "c2", "task": "counting", "target_image": "images/t.png", '
                                              b'"source_image": "images/bad.png", "prompt": "How many?", "meta": {}}')
    (path.parent / "images" / "bad.png").write_bytes(b"not a png")
    loaded = load()
    assert [pair.id for pair in loaded.pairs] == ["c1"] and loaded.skipped == 1
    assert loaded.skipped_reasons[0].startswith(f"{path}:2: image not readable")
