"""Session fixtures: the tiny checkpoints of :mod:`tiny_ckpts`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_ckpts import build, load, plant_late_capability, save, tiny_config


@pytest.fixture(scope="session")
def ckpt_a(tmp_path_factory) -> Path:
    return save(build(tiny_config(), seed=0), tmp_path_factory.mktemp("ckpt") / "a")


@pytest.fixture(scope="session")
def ckpt_b(tmp_path_factory) -> Path:
    return save(build(tiny_config(), seed=1), tmp_path_factory.mktemp("ckpt") / "b")


@pytest.fixture(scope="session")
def ckpt_planted(tmp_path_factory, ckpt_a) -> Path:
    model = load(ckpt_a)
    plant_late_capability(model)
    return save(model, tmp_path_factory.mktemp("ckpt") / "planted")


@pytest.fixture(scope="session")
def ckpt_shallow(tmp_path_factory) -> Path:
    return save(build(tiny_config(layers=4), seed=2), tmp_path_factory.mktemp("ckpt") / "shallow")


@pytest.fixture(scope="session")
def ckpt_qwen2vl(tmp_path_factory) -> Path:
    return save(build(tiny_config(arch="qwen2_vl"), seed=3), tmp_path_factory.mktemp("ckpt") / "qwen2vl")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These models are tiny: one intra-op thread is faster, and on a busy 2-core machine
    multi-threaded copies of small tensors mostly wait on each other. Restored after each test."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
