"""Reading checkpoints: canonical names across layouts, sharding, fingerprints, and every bad
input with the one-line error a user sees."""

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from vlmdiag.checkpoints import Checkpoint, check_compatible, open_checkpoint
from vlmdiag.errors import CheckpointError, IncompatibleCheckpointsError


@pytest.fixture(scope="module")
def triple(planted):
    return planted("paper")


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_legacy_and_in_memory_layouts_read_the_same(triple, tmp_path):
    legacy = Checkpoint(triple["base"])
    assert any(n.startswith("model.language_model.layers.") for n in legacy.names)
    assert not any(n.startswith(("model.layers.", "visual.")) for n in legacy.names)
    # rewrite the file with the in-memory names (as some tools save them)
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    shutil.copy(triple["base"] / "config.json", renamed)
    save_file({n: legacy.get(n).contiguous() for n in legacy.names}, renamed / "model.safetensors")
    other = Checkpoint(renamed)
    assert other.names == legacy.names
    name = "model.language_model.layers.2.mlp.up_proj.weight"
    assert torch.equal(other.get(name), legacy.get(name))
    assert legacy.locate(name).unified == 3
    assert legacy.locate("model.visual.blocks.0.attn.qkv.weight").unified == -2
    assert legacy.locate("model.visual.merger.mlp.0.weight").unified == 0


def test_sharded_index_reads_every_tensor(triple, tmp_path):
    single = Checkpoint(triple["base"])
    folder = tmp_path / "sharded"
    folder.mkdir()
    shutil.copy(triple["base"] / "config.json", folder)
    names = list(single.names)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for file, part in halves.items():
        save_file({n: single.get(n).contiguous() for n in part}, folder / file)
        weight_map.update({n: file for n in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    sharded = Checkpoint(folder)
    assert sharded.names == single.names
    assert all(torch.equal(sharded.get(n), single.get(n)) for n in names[:10])


def test_fingerprint_tells_checkpoints_apart_and_copies_together(triple, tmp_path):
    base, rl = Checkpoint(triple["base"]), Checkpoint(triple["rl"])
    copy = Checkpoint(_copy(triple["base"], tmp_path / "copy"))
    assert base.fingerprint == copy.fingerprint != rl.fingerprint


def _truncate(folder):
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])


def _corrupt_header(folder):
    f = folder / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:20] = b"not json!!!!"
    f.write_bytes(bytes(data))


def _huge_header(folder):
    f = folder / "model.safetensors"
    f.write_bytes((10 ** 12).to_bytes(8, "little") + f.read_bytes()[8:])


def _pickle_only(folder):
    ckpt = Checkpoint(folder)
    state = {n: ckpt.get(n) for n in ckpt.names}
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")


def _index_missing_shard(folder):
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "gone.safetensors"}}))


BAD = {
    "no weights": (lambda f: (f / "model.safetensors").unlink(), "no weights"),
    "no config": (lambda f: (f / "config.json").unlink(), "no config.json"),
    "truncated": (_truncate, "truncated safetensors file"),
    "corrupt header": (_corrupt_header, "corrupt safetensors header"),
    "header longer than file": (_huge_header, "corrupt safetensors header"),
    "pickle only": (_pickle_only, "only pickle weights"),
    "index names missing shard": (_index_missing_shard, "names shard(s) that do not exist: gone.safetensors"),
    "unknown architecture": (lambda f: (f / "config.json").write_text('{"architectures": ["Nope"], "model_type": "nope"}'),
                             "unsupported architecture"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_checkpoint_gets_one_clear_line(case, triple, tmp_path):
    folder = _copy(triple["base"], tmp_path / "ckpt")
    damage, expected = BAD[case]
    damage(folder)
    with pytest.raises(CheckpointError) as info:
        Checkpoint(folder)
    message = str(info.value)
    assert expected in message and str(folder) in message and "\n" not in message


def test_pickle_weights_load_only_when_allowed(triple, tmp_path):
    folder = _copy(triple["base"], tmp_path / "ckpt")
    reference = Checkpoint(folder)
    name = reference.names[5]
    expected = reference.get(name)
    _pickle_only(folder)
    allowed = Checkpoint(folder, allow_pickle=True)
    assert allowed.names == reference.names and torch.equal(allowed.get(name), expected)


def test_missing_folder_and_offline_hub_id(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="does not exist"):
        open_checkpoint(str(tmp_path / "nope"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="hub.*failed.*offline"):
        open_checkpoint("some-org/some-model-that-is-not-here")


def test_incompatible_checkpoints_name_the_tensors(planted, triple):
    deeper = planted("paper", num_layers=7)
    with pytest.raises(IncompatibleCheckpointsError) as info:
        check_compatible(Checkpoint(triple["base"]), Checkpoint(deeper["base"]))
    message = str(info.value)
    assert "6 vs 7 LLM layers" in message and "model.language_model.layers.6." in message
    wider = planted("paper", hidden=96)
    with pytest.raises(IncompatibleCheckpointsError, match="differ in shape: .*\\[128, 64\\] vs \\[192, 96\\]"):
        check_compatible(Checkpoint(triple["base"]), Checkpoint(wider["base"]))


def test_reading_never_writes_into_the_folder(triple):
    before = {p.name: p.read_bytes() for p in triple["rl"].iterdir()}
    ckpt = Checkpoint(triple["rl"])
    _ = ckpt.fingerprint, [ckpt.get(n) for n in ckpt.names]
    assert {p.name: p.read_bytes() for p in triple["rl"].iterdir()} == before
