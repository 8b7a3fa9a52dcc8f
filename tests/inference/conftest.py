"""Session fixtures: tiny random Qwen2.5-VL models with a local tokenizer and processor."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

import tiny_models  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def qwen_processor():
    return tiny_models.qwen25_processor()


@pytest.fixture(scope="session")
def qwen_loaded(qwen_processor):
    """A 4-layer Qwen2.5-VL (sdpa attention) wrapped with its processor."""
    from vlmdiag.runtime.model import wrap_model

    model = tiny_models.spread_init(tiny_models.qwen25_model(qwen_processor.tokenizer, seed=0), seed=0)
    return wrap_model(model, qwen_processor)


@pytest.fixture(scope="session")
def qwen_eager(qwen_processor):
    """The same weights as ``qwen_loaded``, with eager attention (for output_attentions)."""
    from vlmdiag.runtime.model import wrap_model

    model = tiny_models.spread_init(tiny_models.qwen25_model(qwen_processor.tokenizer, seed=0), seed=0)
    model.set_attn_implementation("eager")
    return wrap_model(model, qwen_processor)


@pytest.fixture(scope="session")
def images():
    c = tiny_models.colour_image
    return {
        "red": c((255, 0, 0)), "blue": c((0, 0, 255)), "green_wide": c((0, 255, 0), size=(168, 112)),
        "blue_corner": c((0, 0, 255), box=(56, 56, 112, 112)),
    }
