"""TensorReader: slices read into caller-owned buffers equal the tensors, from safetensors and pickle."""

import pytest
import torch

from vlmdiag.checkpoints import Checkpoint
from vlmdiag.errors import CheckpointError


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The same tensors as safetensors (bf16 and fp32) and as a pickle file."""
    from safetensors.torch import save_file

    from vlmdiag.planted import tiny_config

    g = torch.Generator().manual_seed(0)
    tensors = {"model.language_model.layers.0.mlp.up_proj.weight": torch.randn(37, 11, generator=g).bfloat16(),
               "model.language_model.layers.1.mlp.up_proj.weight": torch.randn(5, 3, 2, generator=g),
               "model.visual.blocks.0.attn.qkv.weight": torch.zeros(0, 4)}
    out = {}
    for kind in ("safetensors", "pickle"):
        folder = tmp_path_factory.mktemp(kind)
        (folder / "config.json").write_text(tiny_config(num_layers=2, vision_depth=1).to_json_string())  # the layers below
        if kind == "safetensors":
            save_file(tensors, str(folder / "model.safetensors"))
        else:
            torch.save(tensors, folder / "pytorch_model.bin")
        out[kind] = folder
    return out, tensors


@pytest.mark.parametrize("kind", ["safetensors", "pickle"])
@pytest.mark.parametrize("chunk", [1, 4, 100, 1000])
def test_slices_and_read_into_equal_the_tensor(folders, kind, chunk):
    paths, tensors = folders
    checkpoint = Checkpoint(paths[kind], allow_pickle=kind == "pickle")
    with checkpoint.reader() as reader:
        for name, tensor in tensors.items():
            flat = tensor.reshape(-1)
            buffer = torch.empty(max(chunk, 1), dtype=tensor.dtype)
            pieces = [buffer[:k].clone() for k in reader.slices(name, buffer, chunk)]
            assert torch.equal(torch.cat(pieces) if pieces else flat[:0], flat)
            if flat.numel() > 3:
                out = torch.empty(3, dtype=tensor.dtype)
                assert torch.equal(reader.read_into(name, out, 2), flat[2:5])


def test_read_into_refuses_a_wrong_buffer(folders):
    paths, tensors = folders
    name = next(iter(tensors))
    with Checkpoint(paths["safetensors"]).reader() as reader:
        with pytest.raises(ValueError, match="contiguous CPU torch.bfloat16"):
            reader.read_into(name, torch.empty(4, dtype=torch.float32))
        with pytest.raises(ValueError, match="outside"):
            reader.read_into(name, torch.empty(4, dtype=torch.bfloat16), 37 * 11 - 3)
        with pytest.raises(KeyError):
            reader.read_into("nope", torch.empty(1))


def test_a_file_truncated_after_opening_is_a_clear_error(folders, tmp_path):
    import shutil

    paths, tensors = folders
    folder = tmp_path / "copy"
    shutil.copytree(paths["safetensors"], folder)
    checkpoint = Checkpoint(folder)
    file = folder / "model.safetensors"
    name = max(tensors, key=lambda n: checkpoint.entry(n).end)  # stored last
    file.write_bytes(file.read_bytes()[:-8])  # the header was read while the file was whole
    tensor = tensors[name].reshape(-1)
    with checkpoint.reader() as reader, pytest.raises(CheckpointError, match=f"{file}: truncated"):
        reader.read_into(name, torch.empty(tensor.numel(), dtype=tensor.dtype))
