"""The model organism's RL stages: GRPO (trl ``GRPOTrainer``) with a correctness and a format
reward."""

from __future__ import annotations

import tempfile
import warnings
from typing import Sequence

from vlmdiag.organism import tasks as T
from vlmdiag.organism.supervised import ProgressFn


def _completion_text(c) -> str:
    if isinstance(c, str):
        return c
    if isinstance(c, list) and c and isinstance(c[0], dict):
        content = c[0].get("content", "")
        if isinstance(content, list):
            return "".join(part.get("text", "") or "" for part in content if isinstance(part, dict))
        return content or ""
    return str(c)


def correctness_reward(completions, answer, task=None, **kwargs) -> list[float]:
    """1.0 when the ``<answer>`` content is correct for the row's task (:func:`tasks.is_correct`;
    ``task`` is the dataset column, arithmetic when absent), else 0.0."""
    tasks = task if task is not None else ["arithmetic"] * len(completions)
    return [1.0 if T.is_correct(t, _completion_text(c), a) else 0.0
            for c, a, t in zip(completions, answer, tasks)]


def format_reward(completions, **kwargs) -> list[float]:
    """0.5 when the completion is exactly ``<think>…</think><answer>…</answer>``, else 0.0."""
    return [0.5 if T.has_reasoning_format(_completion_text(c)) else 0.0 for c in completions]


def grpo(model, processor, items: Sequence[T.TaskItem], *, steps: int, prompts_per_step: int,
         num_generations: int, lr: float, temperature: float, seed: int, beta: float = 0.0,
         max_completion_length: int = 20, progress: ProgressFn | None = None) -> list[dict]:
    """GRPO (trl ``GRPOTrainer``) on the prompts of ``items``, reward = correctness + format.

    Prompts are ``image_message(question)`` with the item's image; ``items`` are visual arithmetic,
    optionally mixed with perception items (each scored by its own task), in a seeded order: the
    first ``steps * prompts_per_step`` are the run's prompts, each used once (in trl's seeded
    order). One policy update per generation batch; no activation checkpointing (at this size it
    saves no memory that matters and costs a recomputed forward). ``beta > 0`` adds trl's
    per-token KL penalty to a frozen reference model, which trl loads from
    ``model.config._name_or_path``: load ``model`` with ``from_pretrained`` from the reference
    checkpoint (the IN stage). Parameters with ``requires_grad=False`` (frozen
    regions) are left out of the optimiser.

    Returns:
        trl's per-step log history (dicts with ``reward``, ``reward_std``, ``kl``, ``loss`` ...).

    Raises:
        ValueError: ``beta > 0`` and ``model`` was not loaded from a checkpoint folder.
    """
    from pathlib import Path

    ref = getattr(model.config, "_name_or_path", "") or ""
    if beta > 0 and not (ref and (Path(ref) / "config.json").is_file()):
        raise ValueError("grpo(beta > 0) needs a model loaded with from_pretrained(folder): trl "
                         "loads the KL reference from model.config._name_or_path")
    import datasets
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    rows = [{"prompt": [{"role": "user", "content": it.question}], "image": it.image(),
             "answer": it.answer, "task": it.task} for it in items[:steps * prompts_per_step]]
    ds = datasets.Dataset.from_list(rows)

    class _Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if progress:
                progress(state.global_step, steps)

    # transformers 5.25 renamed the flag; the old name warns there and goes in v6
    checkpointing = ("activation_checkpointing" if "activation_checkpointing" in GRPOConfig.__dataclass_fields__
                     else "gradient_checkpointing")
    with tempfile.TemporaryDirectory(prefix="vlmdiag-grpo-") as out_dir:
        cfg = GRPOConfig(
            output_dir=out_dir, per_device_train_batch_size=prompts_per_step * num_generations,
            num_generations=num_generations, max_completion_length=max_completion_length,
            learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0, max_steps=steps,
            logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=False,
            beta=beta, temperature=temperature, seed=seed, data_seed=seed,
            dataloader_num_workers=0, disable_tqdm=True, max_grad_norm=1.0, weight_decay=0.0,
            **{checkpointing: False},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = GRPOTrainer(model=model, reward_funcs=[correctness_reward, format_reward],
                                  args=cfg, train_dataset=ds, processing_class=processor,
                                  callbacks=[_Progress()])
            trainer.remove_callback(PrinterCallback)  # the log history is returned instead
            trainer.train()
        history = [h for h in trainer.state.log_history if "reward" in h]
    model.eval()
    return history
