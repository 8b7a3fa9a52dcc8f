"""Property tests of the parsers that decide which bytes a verdict reads (issue 12): safetensors
headers against the safetensors library itself, shard indexes, thresholds' numbers.

- A safetensors header is accepted exactly when the safetensors library accepts the file, and the
  tensors read are then the library's, byte for byte (overlapping, out-of-order, gapped or
  short byte ranges, trailing data: all refused, as the library refuses them).
- A shard index either names shards that lie inside the checkpoint folder, or is refused with one
  line naming the index (and, for ``..`` or absolute entries, saying they point outside).
- A thresholds file with a NaN or infinite number, or a count out of its range, is refused with
  ``file:line``.

Derandomized, fixed budgets, no example database (as tests/reliability/test_fuzz_parsers.py).
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from test_fuzz_parsers import attempt, fuzz, values
from vlmdiag.checkpoints import Checkpoint
from vlmdiag.checkpoints.safetensors_header import DTYPES, read_header, read_tensor
from vlmdiag.checkpoints.validate import shard_files
from vlmdiag.claims import load_thresholds
from vlmdiag.claims.thresholds import COUNT_RANGES
from vlmdiag.errors import CheckpointError, ThresholdsError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scratch():
    from test_fuzz_parsers import Scratch

    with tempfile.TemporaryDirectory(prefix="vlmdiag-strict-") as root:
        yield Scratch(Path(root))


# ----------------------------------------------------------------------------- safetensors headers

PERTURBATIONS = ("none", "overlap", "gap", "duplicate-range", "short", "long", "start-late", "reversed",
                 "trailing-bytes", "truncated", "metadata-not-strings", "leading-space")


@st.composite
def laid_out_files(draw):
    """A safetensors file whose tensors are laid out in a drawn order (not the header's), then
    perturbed in one way (or not at all)."""
    count = draw(st.integers(0, 5))
    specs = [(f"t{i}", draw(st.sampled_from(sorted(DTYPES))), draw(st.lists(st.integers(0, 4), max_size=3)))
             for i in range(count)]
    order = draw(st.permutations(range(count)))
    offsets, position = {}, 0
    for i in order:
        name, dtype, shape = specs[i]
        size = math.prod(shape) * DTYPES[dtype].itemsize
        offsets[name] = [position, position + size]
        position += size
    perturbation = draw(st.sampled_from(PERTURBATIONS))
    event(perturbation)
    names = [specs[i][0] for i in order]
    sized = [n for n in names if offsets[n][1] > offsets[n][0]]
    if perturbation == "overlap" and len(sized) >= 2:  # one tensor reads (part of) another's bytes
        a, b = draw(st.sampled_from(sized)), draw(st.sampled_from(sized))
        width = offsets[b][1] - offsets[b][0]
        offsets[b] = [offsets[a][0], offsets[a][0] + width]
    elif perturbation == "gap" and sized:
        for name in names[names.index(sized[0]):]:
            offsets[name] = [offsets[name][0] + 2, offsets[name][1] + 2]
        position += 2
    elif perturbation == "duplicate-range" and len(names) >= 2:
        offsets[names[1]] = list(offsets[names[0]])
    elif perturbation in ("short", "long") and sized:
        offsets[sized[-1]][1] += -1 if perturbation == "short" else 1
    elif perturbation == "start-late" and names:
        for name in names:
            offsets[name] = [offsets[name][0] + 4, offsets[name][1] + 4]
        position += 4
    elif perturbation == "reversed" and sized:
        offsets[sized[0]] = offsets[sized[0]][::-1]
    header = {name: {"dtype": dtype, "shape": shape, "data_offsets": offsets[name]} for name, dtype, shape in specs}
    if draw(st.booleans()):
        header["__metadata__"] = {"format": 1} if perturbation == "metadata-not-strings" else {"format": "pt"}
    raw = json.dumps(header).encode()
    raw = b" " + raw if perturbation == "leading-space" else raw + b" " * draw(st.integers(0, 7))
    data = draw(st.binary(min_size=position, max_size=position))
    if perturbation == "trailing-bytes":
        data += b"\0" * draw(st.integers(1, 9))
    elif perturbation == "truncated" and data:
        data = data[:-draw(st.integers(1, len(data)))]
    return struct.pack("<Q", len(raw)) + raw + data


def _library(content: bytes) -> dict | None:
    """What the safetensors library reads from ``content``, or None when it refuses the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(content)
    except (SafetensorError, ValueError, RuntimeError) as error:
        event(f"library refuses: {type(error).__name__}")
        return None


def _bytes(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""


@fuzz(400)
@given(content=laid_out_files())
def test_a_header_is_accepted_exactly_when_the_safetensors_library_accepts_it(scratch, content):
    path = scratch.folder() / "model.safetensors"
    path.write_bytes(content)
    expected = _library(content)
    parsed = attempt(lambda: read_header(path), CheckpointError, str(path))
    assert (parsed is not None) == (expected is not None), (content[:300], expected)
    if parsed is None:
        return
    entries, _ = parsed
    assert set(entries) == set(expected)
    for name, entry in entries.items():
        ours = read_tensor(entry)
        assert ours.dtype == expected[name].dtype and ours.shape == expected[name].shape
        assert _bytes(ours) == _bytes(expected[name])


# ----------------------------------------------------------------------------- shard indexes

OUTSIDE = ["../outside.safetensors", "../../etc/outside.safetensors", "/tmp/outside.safetensors",
           "sub/../../outside.safetensors", "..", "../x/../outside.safetensors"]
INSIDE = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "sub/model.safetensors",
          "./model-00001-of-00002.safetensors"]
OTHER = ["pytorch_model.bin", "", ".", "model.safetensors\0x"]


def _indexes():
    shard = st.sampled_from(OUTSIDE + INSIDE + OTHER) | st.text(max_size=16) | values
    weight_map = st.dictionaries(st.text(max_size=6), shard, max_size=4) | values
    document = st.fixed_dictionaries({"weight_map": weight_map}) | st.fixed_dictionaries(
        {"metadata": values, "weight_map": weight_map}) | values
    return document.map(lambda d: json.dumps(d).encode()) | st.binary(max_size=40) | st.integers(1, 3000).map(
        lambda depth: b'{"weight_map": ' + b"[" * depth + b"]" * depth + b"}")


def _outside(shard: str) -> bool:
    return shard.startswith("/") or ".." in shard.replace("\\", "/").split("/")


@fuzz(400)
@given(content=_indexes())
def test_a_shard_index_names_shards_inside_the_folder_or_is_refused(scratch, content):
    folder = scratch.folder()
    index = folder / "model.safetensors.index.json"
    index.write_bytes(content)
    files = attempt(lambda: shard_files(index), CheckpointError, str(index))
    if files is None:
        try:
            weight_map = json.loads(content).get("weight_map")
            shards = [s for s in weight_map.values() if isinstance(s, str)] if isinstance(weight_map, dict) else []
        except (ValueError, AttributeError, RecursionError):
            shards = []
        if shards and all(isinstance(s, str) for s in weight_map.values()) and _outside(shards[0]):
            with pytest.raises(CheckpointError, match="points outside the checkpoint folder"):
                shard_files(index)
        return
    for name, path in files.items():
        assert not _outside(name) and name.endswith(".safetensors")
        assert os.path.normpath(path).startswith(str(folder) + os.sep)


@fuzz(60)
@given(shard=st.sampled_from(OUTSIDE + INSIDE))
def test_a_checkpoint_reads_no_shard_outside_its_folder(scratch, shard):
    """A sharded checkpoint whose index points at a real safetensors file outside its folder (the
    old code read it: another checkpoint's weights under this one's name)."""
    from safetensors.torch import save_file

    from vlmdiag.planted import tiny_config

    root = scratch.folder()
    folder = root / "a" / "b"
    (folder / "sub").mkdir(parents=True)
    tensors = {"model.layers.0.mlp.up_proj.weight": torch.ones(2, 2)}
    for target in (root / "outside.safetensors", root / "a" / "outside.safetensors", folder / shard):
        if target.parent.is_dir() and target.name.endswith(".safetensors"):
            save_file(tensors, str(target))
    (folder / "config.json").write_text(tiny_config(num_layers=1, vision_depth=1).to_json_string())
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "model.layers.0.mlp.up_proj.weight": shard}}))
    checkpoint = attempt(lambda: Checkpoint(folder), CheckpointError, str(folder))
    if _outside(shard):
        assert checkpoint is None
        with pytest.raises(CheckpointError, match="points outside the checkpoint folder; refused"):
            Checkpoint(folder)
    else:
        assert checkpoint is not None
        for name in checkpoint.names:
            assert folder.resolve() in checkpoint.entry(name).file.resolve().parents


# ----------------------------------------------------------------------------- thresholds' numbers

SHIPPED = yaml.safe_load((ROOT / "thresholds.yaml").read_text())
NUMBERS = sorted({(claim, key) for claim, entry in SHIPPED["claims"].items() for key, value in entry.items()
                  if isinstance(value, (int, float)) and not isinstance(value, bool)})


@fuzz(120)
@given(where=st.sampled_from(NUMBERS), value=st.floats() | st.integers(-2**70, 2**70)
       | st.sampled_from([".nan", ".inf", "-.inf", "nan", "inf", "NaN", "1e400"]))
def test_thresholds_hold_finite_numbers_and_sane_counts(scratch, where, value):
    claim, key = where
    text = yaml.safe_dump(SHIPPED, sort_keys=False)
    path = scratch.folder() / "thresholds.yaml"
    data = json.loads(json.dumps(SHIPPED))
    data["claims"][claim][key] = "PLACEHOLDER"
    text = yaml.safe_dump(data, sort_keys=False).replace("PLACEHOLDER", value if isinstance(value, str) else repr(value))
    path.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if f"{key}: " in row and
                _owner(text, i) == claim)
    try:
        loaded = load_thresholds(path)
    except ThresholdsError as error:
        message = str(error)
        assert message.strip() and "\n" not in message and str(path) in message
        if "is not a finite number" in message or "outside the sane range" in message:
            assert message.startswith(f"{path}:{line}: claims.{claim}.{key}: "), message
        return
    number = getattr(loaded.get(claim), key)
    assert math.isfinite(number), f"{value!r} was accepted as {number}"
    low, high = COUNT_RANGES.get(key, (-math.inf, math.inf))
    assert low <= number <= high


def _owner(text: str, line: int) -> str:
    """The claim id whose block holds 1-based ``line`` of a thresholds file dumped by yaml."""
    owner = None
    for row in text.splitlines()[:line]:
        if row.startswith("  ") and not row.startswith("    ") and row.rstrip().endswith(":"):
            owner = row.strip()[:-1]
    return owner
