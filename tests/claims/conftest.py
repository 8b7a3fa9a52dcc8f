"""Fixtures of the inference-claim tests (helpers in ``claim_helpers``): tiny random checkpoints
of the organism's architecture (6 decoder layers: ``paper`` regions 2/2/2) saved with the
organism's tokenizer and processor, and the shipped thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlmdiag.claims import load_thresholds

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shipped(pytestconfig):
    """The shipped thresholds file."""
    return load_thresholds(pytestconfig.rootpath / "thresholds.yaml")


@pytest.fixture(scope="session")
def runnable(tmp_path_factory) -> dict[str, Path]:
    """``{"origin", "base", "rl", "frozen_late"}``: unrelated random tiny models that can run
    (config, safetensors, tokenizer, processor)."""
    from vlmdiag.organism.tasks import corpus_texts
    from vlmdiag.organism.tokenizer import build_processor, build_tokenizer, save_processor
    from vlmdiag.organism.train import build_model

    tokenizer = build_tokenizer(corpus_texts(seed=0, n_per_task=10))
    processor = build_processor(tokenizer)
    root = tmp_path_factory.mktemp("runnable")
    paths = {}
    for seed, name in enumerate(("origin", "base", "rl", "frozen_late")):
        model = build_model(tokenizer, hidden=64, layers=6, heads=4, kv_heads=2, intermediate=128,
                            vision_hidden=32, vision_depth=2, seed=seed)
        model.save_pretrained(root / name)
        save_processor(processor, root / name)
        paths[name] = root / name
    return paths
