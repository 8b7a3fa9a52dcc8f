"""A checkpoint's identity (its fingerprint) is exact: every tensor byte and every other file, by
content, whatever the layout; remembered between runs by file stat, never by a sample."""

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import save_file

from vlmdiag.cache import ResultsCache
from vlmdiag.checkpoints import Checkpoint, identity
from vlmdiag.errors import CheckpointError


@pytest.fixture
def base(planted, tmp_path):
    """A private copy of the planted IN checkpoint (tests change its bytes)."""
    return shutil.copytree(planted("paper")["base"], tmp_path / "base")


@pytest.mark.parametrize("suffix", ["lm_head.weight", "layers.5.mlp.down_proj.weight"])
def test_one_tensor_changed_outside_the_old_samples_is_another_checkpoint(base, tmp_path, suffix,
                                                                          flip_outside_samples):
    changed = shutil.copytree(base, tmp_path / "changed")
    assert flip_outside_samples(changed, suffix) > 0
    copy = shutil.copytree(base, tmp_path / "copy")
    assert Checkpoint(base).fingerprint == Checkpoint(copy).fingerprint != Checkpoint(changed).fingerprint
    differ = [n for n, d in Checkpoint(base).tensor_digests.items() if Checkpoint(changed).tensor_digests[n] != d]
    assert len(differ) == 1 and differ[0].endswith(suffix)


def test_identity_is_the_model_not_the_file_layout(base, tmp_path):
    ckpt = Checkpoint(base)
    names = list(ckpt.names)
    # Re-sharded into two files with an index, with safetensors metadata: the same model.
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for name in ("config.json", "generation_config.json"):
        shutil.copy(base / name, sharded)
    halves = {"model-00001-of-00002.safetensors": names[1::2], "model-00002-of-00002.safetensors": names[::2]}
    for file, part in halves.items():
        save_file({n: ckpt.get(n).contiguous() for n in part}, sharded / file, metadata={"format": "pt"})
    index = {"metadata": {"total_size": 0}, "weight_map": {n: f for f, part in halves.items() for n in part}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    (sharded / ".DS_Store").write_bytes(b"finder junk")  # hidden files are not the model
    assert Checkpoint(sharded).fingerprint == ckpt.fingerprint
    # The same tensors in a pickle file (read with --allow-pickle): the same model.
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("config.json", "generation_config.json"):
        shutil.copy(base / name, pickled)
    torch.save({n: ckpt.get(n) for n in names}, pickled / "pytorch_model.bin")
    assert Checkpoint(pickled, allow_pickle=True).fingerprint == ckpt.fingerprint
    # Another stored dtype, a changed config value, a new chat template: another model.
    half = tmp_path / "half"
    shutil.copytree(sharded, half)
    first = names[1]
    save_file({n: ckpt.get(n).to(torch.float16 if n == first else ckpt.dtype(n)).contiguous() for n in names[1::2]},
              half / "model-00001-of-00002.safetensors")
    assert Checkpoint(half).fingerprint != ckpt.fingerprint
    config = json.loads((base / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5 if config.get("rms_norm_eps") != 1e-5 else 1e-6
    (sharded / "config.json").write_text(json.dumps(config))
    assert Checkpoint(sharded).fingerprint != ckpt.fingerprint
    (base / "chat_template.jinja").write_text("{{ messages }}")
    assert Checkpoint(base).fingerprint != ckpt.fingerprint


def test_digests_are_remembered_by_file_stat_and_an_edit_is_seen(base, tmp_path, monkeypatch, flip_outside_samples):
    store = ResultsCache(tmp_path / "cache")
    hashed = []
    real = identity.safetensors_digests
    monkeypatch.setattr(identity, "safetensors_digests", lambda entries: hashed.append(1) or real(entries))
    first = Checkpoint(base, store=store).fingerprint
    assert len(hashed) == 1
    assert Checkpoint(base).fingerprint == first and len(hashed) == 2  # no store: hashed again
    assert list((tmp_path / "cache" / "digests").glob("*.json"))
    # A rerun on unchanged files reads no weight byte: the digests come from the store.
    assert Checkpoint(base, store=store).fingerprint == first and len(hashed) == 2
    # An edit in place, with size and modification time put back, is seen (the change time moves).
    weights = base / "model.safetensors"
    stat = weights.stat()
    flip_outside_samples(base, "layers.5.mlp.down_proj.weight")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights.stat().st_ino == stat.st_ino and weights.stat().st_size == stat.st_size
    assert Checkpoint(base, store=store).fingerprint != first and len(hashed) == 3


def test_an_unreadable_weight_file_is_one_clear_error(base, monkeypatch):
    def fail(entries):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(identity, "safetensors_digests", fail)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot read \(Permission denied\)"):
        _ = Checkpoint(base).fingerprint
