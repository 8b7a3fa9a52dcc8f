"""Fixtures of the training-integration tests: tiny checkpoints of the organism's architecture (6
decoder layers, ``paper`` regions 2/2/2, the organism's tokenizer and processor) as Base and IN
(helpers in ``grpo_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_stages(tmp_path_factory) -> dict[str, Path]:
    """``{"origin", "start"}``: two unrelated random tiny models that can run (the IN update is
    then the difference of two random initialisations: what matters here is that it is an update)."""
    from vlmdiag.organism.tasks import corpus_texts
    from vlmdiag.organism.tokenizer import build_processor, build_tokenizer, save_processor
    from vlmdiag.organism.train import build_model

    tokenizer = build_tokenizer(corpus_texts(seed=0, n_per_task=10))
    processor = build_processor(tokenizer)
    root = tmp_path_factory.mktemp("stages")
    paths = {}
    for seed, name in enumerate(("origin", "start")):
        model = build_model(tokenizer, hidden=64, layers=6, heads=4, kv_heads=2, intermediate=128,
                            vision_hidden=32, vision_depth=2, seed=seed)
        model.save_pretrained(root / name)
        save_processor(processor, root / name)
        paths[name] = root / name
    return paths
