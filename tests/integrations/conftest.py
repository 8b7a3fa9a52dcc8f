"""Fixtures of the training-integration tests: tiny checkpoints of the organism's architecture (6
decoder layers, ``paper`` regions 2/2/2, the organism's tokenizer and processor) as Base and IN, and
a few GRPO steps (trl's ``GRPOTrainer``) with :class:`~vlmdiag.integrations.WeightClaimsCallback`."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch


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


def text_hash_reward(completions, **kwargs) -> list[float]:
    """A reward that differs between completions of one prompt (so GRPO's advantages, and so its
    update, are not zero whatever the model says): the sum of the text's code points mod 7."""
    texts = [c if isinstance(c, str) else str(c) for c in completions]
    return [float(sum(map(ord, t)) % 7) for t in texts]


def grpo_run(start: Path, origin: Path | None, out: Path, *, steps: int, every: int, spectra_every: int,
             save_steps: int | None = None, logging_steps: int = 1):
    """``steps`` GRPO steps from ``start`` (2 prompts x 2 generations, 6 new tokens, lr 1e-3) with the
    callback attached; the trainer saves ``out/checkpoint-K`` every ``save_steps``.
    Returns ``(trainer, callback)``."""
    import datasets
    from transformers import AutoModelForImageTextToText
    from trl import GRPOConfig, GRPOTrainer

    from vlmdiag.integrations import WeightClaimsCallback
    from vlmdiag.organism import tasks as T
    from vlmdiag.runtime.processor import load_processor

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(start)
    processor = load_processor(start)
    items = T.generate("arithmetic", 4, seed=1, held_out=False)
    rows = [{"prompt": [{"role": "user", "content": it.question}], "image": it.image()} for it in items]
    config = GRPOConfig(output_dir=str(out), per_device_train_batch_size=4, num_generations=2, max_completion_length=6,
                        learning_rate=1e-3, lr_scheduler_type="constant", max_steps=steps, logging_steps=logging_steps,
                        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
                        save_only_model=True, report_to="none", use_cpu=True, bf16=False, beta=0.0, seed=0,
                        disable_tqdm=True, dataloader_num_workers=0, weight_decay=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = GRPOTrainer(model=model, reward_funcs=[text_hash_reward], args=config,
                              train_dataset=datasets.Dataset.from_list(rows), processing_class=processor)
        callback = WeightClaimsCallback(trainer, start, origin=origin, every_n_steps=every,
                                        spectra_every_n_steps=spectra_every)
        trainer.add_callback(callback)
        trainer.train()
    return trainer, callback
