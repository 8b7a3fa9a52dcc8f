"""Device, dtype and split choices for the GPU path, as pure functions (no GPU needed), and the
one-model-per-GPU holder. The CUDA branches themselves cannot run on the CPU-only CI machine."""

import gc
import weakref

import pytest
import torch

from vlmdiag.errors import UsageError
from vlmdiag.runtime.model import (GPU_WEIGHT_SHARE, Placement, ResidentModels, choose_device, choose_placement,
                                   evict_for, weight_numel)

GiB = 1 << 30


@pytest.mark.parametrize("requested, cuda, expected", [
    (None, True, "cuda"), (None, False, "cpu"), ("cpu", True, "cpu"), ("cuda:1", True, "cuda:1"),
    (torch.device("cpu"), False, "cpu"),
])
def test_choose_device(requested, cuda, expected):
    assert choose_device(requested, cuda_available=cuda) == torch.device(expected)


@pytest.mark.parametrize("requested, message", [("cuda", "CUDA is not available"), ("cuda:0", "CUDA is not available"),
                                                ("gpu please", "not a torch device")])
def test_choose_device_refuses(requested, message):
    with pytest.raises(UsageError, match=message):
        choose_device(requested, cuda_available=False)


def test_bf16_on_gpu_fp32_on_cpu_unless_asked():
    assert choose_placement(cuda_available=True) == Placement(torch.device("cuda"), torch.bfloat16)
    assert choose_placement(cuda_available=False) == Placement(torch.device("cpu"), torch.float32)
    assert choose_placement("cuda", torch.float16, cuda_available=True).dtype == torch.float16


def test_model_larger_than_the_gpu_is_split():
    free = 80 * GiB
    fits = int(GPU_WEIGHT_SHARE * free) // 2 - 1  # bf16 elements that just fit
    assert choose_placement("cuda", weight_numel=fits, gpu_free_bytes=free, cuda_available=True).device_map is None
    split = choose_placement("cuda", weight_numel=fits + 10, gpu_free_bytes=free, cuda_available=True)
    assert split == Placement(torch.device("cuda", 0), torch.bfloat16, "auto")
    # fp32 doubles the bytes: the same model no longer fits
    assert choose_placement("cuda", torch.float32, weight_numel=fits, gpu_free_bytes=free,
                            cuda_available=True).device_map == "auto"
    # an explicit GPU index is honoured; CPU never splits
    assert choose_placement("cuda:1", weight_numel=10**12, gpu_free_bytes=free, cuda_available=True).device_map is None
    assert choose_placement("cpu", weight_numel=10**12, gpu_free_bytes=free, cuda_available=True).device_map is None


def test_weight_numel_counts_floating_point_weights(planted):
    from vlmdiag.checkpoints import open_checkpoint

    folder = planted("paper")["base"]
    checkpoint = open_checkpoint(str(folder))
    expected = sum(torch.Size(checkpoint.shape(n)).numel() for n in checkpoint.names
                   if checkpoint.dtype(n).is_floating_point)
    assert weight_numel(folder) == expected > 0


def test_weight_numel_of_a_folder_without_safetensors(tmp_path):
    assert weight_numel(tmp_path) is None


def test_one_model_resident_per_gpu_none_evicted_on_cpu():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert evict_for({"a": cuda, "b": cpu, "c": torch.device("cuda", 1)}, cuda) == ["a", "c"]
    assert evict_for({"a": cuda, "b": cpu}, cpu) == []
    assert evict_for({}, cuda) == []


class _Model:
    def __init__(self, path, device):
        self.path, self.device = path, torch.device(device or "cpu")


def test_resident_models_load_once_and_release_frees():
    loads = []

    def load(path, **kwargs):
        loads.append(path)
        return _Model(path, kwargs.get("device"))

    models = ResidentModels(load)
    first = models.get("a", "/ckpt/a", device="cpu")
    assert models.get("a", "/ckpt/a", device="cpu") is first
    models.get("b", "/ckpt/b", device="cpu")
    assert loads == ["/ckpt/a", "/ckpt/b"] and "a" in models and "b" in models  # CPU keeps both
    ref = weakref.ref(first)
    del first
    models.release("a")
    gc.collect()
    assert ref() is None and "a" not in models and "b" in models
    models.clear()
    assert "b" not in models
