"""Helpers of the training-integration tests: a few GRPO steps (trl's ``GRPOTrainer``) with
:class:`~vlmdiag.integrations.WeightClaimsCallback`, and a stand-in for the trainer's loggers."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from transformers import TrainerCallback


def text_hash_reward(completions, **kwargs) -> list[float]:
    """A reward that differs between completions of one prompt (so GRPO's advantages, and so its
    update, are not zero whatever the model says): the sum of the text's code points mod 7."""
    texts = [c if isinstance(c, str) else str(c) for c in completions]
    return [float(sum(map(ord, t)) % 7) for t in texts]


class LogRecorder(TrainerCallback):
    """A stand-in for the ``report_to`` loggers (TensorBoard, W&B): a callback given to the trainer
    at construction, as they are, that records ``(step, logs)`` of every ``on_log`` event."""

    def __init__(self):
        self.seen: list[tuple[int, dict]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.seen.append((state.global_step, dict(logs or {})))


def grpo_run(start: Path, origin: Path | None, out: Path, *, steps: int, every: int, spectra_every: int,
             save_steps: int | None = None, logging_steps: int = 1, reporter=None, **options):
    """``steps`` GRPO steps from ``start`` (2 prompts x 2 generations, 6 new tokens, lr 1e-3) with the
    callback attached; the trainer saves ``out/checkpoint-K`` every ``save_steps``; ``reporter``: a
    callback given at construction (before the vlmdiag one, as the ``report_to`` loggers are);
    ``options``: more arguments of the callback.
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
                        disable_tqdm=True, dataloader_num_workers=0, weight_decay=0.0,
                        # trl's default turns it on; transformers 5.25 renamed the flag (the old name warns)
                        **{"activation_checkpointing" if "activation_checkpointing" in GRPOConfig.__dataclass_fields__
                           else "gradient_checkpointing": False})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = GRPOTrainer(model=model, reward_funcs=[text_hash_reward], args=config,
                              train_dataset=datasets.Dataset.from_list(rows), processing_class=processor,
                              callbacks=[reporter] if reporter is not None else None)
        callback = WeightClaimsCallback(trainer, start, origin=origin, every_n_steps=every,
                                        spectra_every_n_steps=spectra_every, **options)
        trainer.add_callback(callback)
        trainer.train()
    return trainer, callback
