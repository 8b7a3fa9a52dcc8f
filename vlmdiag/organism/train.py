"""Training of the model organism: model construction, SFT stages, GRPO stages, evaluation.

All prompts are the pinned layouts of :mod:`vlmdiag.probes.prompts`, rendered with the processor's
chat template and ``add_generation_prompt=True``, exactly as the diagnostics prompt the model;
every forward pass gets ``mm_token_type_ids``.
"""

from __future__ import annotations

import math
import random
import tempfile
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from vlmdiag.organism import tasks as T

ProgressFn = Callable[[int, int], None]  # (steps done, steps total)


# --------------------------------------------------------------------------- model


def build_model(tokenizer, *, hidden: int, layers: int, heads: int, kv_heads: int,
                intermediate: int, vision_hidden: int, vision_depth: int, seed: int):
    """A randomly initialised ``Qwen2_5_VLForConditionalGeneration`` sized for CPU training.

    The vision tower uses 14 px patches, temporal patch 2 and 2x2 merging (as Qwen2.5-VL), so a
    112x112 image becomes 64 patches -> 16 visual tokens. M-RoPE sections split head_dim/2 as
    1:1.5:1.5 (the 7B uses 16:24:24 of 64). Token ids come from ``tokenizer``.
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    head_dim = hidden // heads
    half = head_dim // 2
    t = half // 4
    section = [t, (half - t) // 2, half - t - (half - t) // 2]
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    eos, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id
    bos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=1024, rope_scaling={"type": "mrope", "mrope_section": section},
        rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=bos, eos_token_id=eos,
        pad_token_id=pad, use_sliding_window=False,
    )
    vision_config = dict(
        depth=vision_depth, hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
        num_heads=max(1, vision_hidden // 32), out_hidden_size=hidden, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=56,
        fullatt_block_indexes=[vision_depth - 1], in_channels=3,
    )
    config = Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config,
                              bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
                              tie_word_embeddings=False, **ids)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.generation_config.bos_token_id = bos
    model.generation_config.do_sample = False
    return model


def decoder_layers(model) -> torch.nn.ModuleList:
    """The LLM decoder layers (``model.model.language_model.layers``)."""
    return model.model.language_model.layers


def region_layers(n_layers: int) -> dict[str, list[int]]:
    """Early/Mid/Late thirds of ``n_layers`` (paper preset): L//3 each, remainder to Early then Mid.

    >>> region_layers(28)["early"][-1], len(region_layers(28)["mid"])
    (9, 9)
    """
    base, rem = divmod(n_layers, 3)
    sizes = [base + (1 if rem > 0 else 0), base + (1 if rem > 1 else 0), base]
    out, start = {}, 0
    for name, size in zip(("early", "mid", "late"), sizes):
        out[name] = list(range(start, start + size))
        start += size
    return out


def freeze_region(model, region: str) -> list[int]:
    """``requires_grad_(False)`` on the decoder layers of ``region`` (early|mid|late); returns them."""
    layers = region_layers(len(decoder_layers(model)))[region]
    for i in layers:
        decoder_layers(model)[i].requires_grad_(False)
    return layers


# --------------------------------------------------------------------------- encoding


@dataclass
class Encoded:
    """One tokenised training example: prompt + target ids, loss mask, image tensors."""

    input_ids: torch.Tensor        # (L,) long
    labels: torch.Tensor           # (L,) long, -100 on the prompt
    mm_token_type_ids: torch.Tensor  # (L,) 0 text / 1 image
    pixel_values: torch.Tensor | None  # (n_patches, 1176)
    image_grid_thw: torch.Tensor | None  # (1, 3)


def prompt_text(processor, messages) -> str:
    """The chat-template rendering of ``messages`` with the assistant generation prompt."""
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def encode(processor, ex: T.ChatExample) -> Encoded:
    """Tokenise ``ex``: the prompt through the processor, the target (+ ``<|im_end|>``) after it."""
    prompt = prompt_text(processor, ex.messages)
    enc = processor(text=[prompt], images=[ex.image] if ex.image is not None else None,
                    return_tensors="pt")
    tgt = processor.tokenizer(ex.target + "<|im_end|>", add_special_tokens=False,
                              return_tensors="pt")["input_ids"][0]
    ids = torch.cat([enc["input_ids"][0], tgt])
    labels = torch.cat([torch.full_like(enc["input_ids"][0], -100), tgt])
    mm = torch.cat([enc["mm_token_type_ids"][0], torch.zeros_like(tgt)])
    return Encoded(ids, labels, mm, enc.get("pixel_values"), enc.get("image_grid_thw"))


def collate(batch: Sequence[Encoded], pad_id: int) -> dict:
    """Right-pad a batch into model inputs (with ``labels`` and ``mm_token_type_ids``)."""
    n = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), -100, dtype=torch.long)
    mm = torch.zeros((len(batch), n), dtype=torch.long)
    att = torch.zeros((len(batch), n), dtype=torch.long)
    for i, e in enumerate(batch):
        k = len(e.input_ids)
        ids[i, :k], labels[i, :k], mm[i, :k], att[i, :k] = e.input_ids, e.labels, e.mm_token_type_ids, 1
    out = dict(input_ids=ids, attention_mask=att, labels=labels, mm_token_type_ids=mm)
    pix = [e.pixel_values for e in batch if e.pixel_values is not None]
    if pix:
        out["pixel_values"] = torch.cat(pix)
        out["image_grid_thw"] = torch.cat([e.image_grid_thw for e in batch if e.image_grid_thw is not None])
    return out


# --------------------------------------------------------------------------- vision pre-training


def merged_visual_tokens(model, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> torch.Tensor:
    """The vision tower's merged tokens (what replaces ``<|image_pad|>``): (sum of tokens, hidden)."""
    return model.model.visual(pixel_values, grid_thw=image_grid_thw).pooler_output


def pretrain_vision(model, processor, scenes: Sequence[T.Scene], *, steps: int, batch_size: int,
                    lr: float, seed: int, occupancy_weight: float = 10.0,
                    progress: ProgressFn | None = None) -> list[float]:
    """Vision pre-training of the vision tower and merger (the pre-trained ViT of a VLM pipeline).

    Linear heads, discarded afterwards, predict from each merged visual token what its 28 px cell
    holds (:func:`tasks.token_labels`: shape kind, colour, digit, row, column; cross-entropy), and
    from each image's mean merged token which cells hold which kind and the number
    (binary cross-entropy weighted by ``occupancy_weight``, and cross-entropy). Without it the
    from-scratch VLM answered the perception questions from priors (at chance) for the whole Base
    budget; with it, the tokens carry what the questions ask and Base SFT learns them in a few
    hundred steps. Only ``model.model.visual`` changes. AdamW (weight decay 0.01), constant ``lr``;
    batches drawn with replacement from ``scenes`` by a seeded generator.

    Returns:
        The loss of every step.
    """
    F = torch.nn.functional
    hidden = model.config.vision_config.out_hidden_size
    n_tok = T.GRID * T.GRID
    torch.manual_seed(seed)
    heads = torch.nn.ModuleDict({
        "kind": torch.nn.Linear(hidden, len(T.SHAPES) + 2),
        "color": torch.nn.Linear(hidden, len(T.COLORS) + 1),
        "digit": torch.nn.Linear(hidden, 10),
        "row": torch.nn.Linear(hidden, T.GRID),
        "col": torch.nn.Linear(hidden, T.GRID),
        "occupancy": torch.nn.Linear(hidden, len(T.SHAPES) * n_tok),
        "number": torch.nn.Linear(hidden, 10),
    })
    visual = model.model.visual
    params = list(visual.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    visual.train()
    losses = []
    for step in range(steps):
        batch = [scenes[i] for i in torch.randint(len(scenes), (batch_size,), generator=gen).tolist()]
        enc = processor.image_processor([T.render(sc) for sc in batch], return_tensors="pt")
        feats = merged_visual_tokens(model, enc["pixel_values"], enc["image_grid_thw"])
        labels = [T.token_labels(sc) for sc in batch]

        def target(key: str) -> torch.Tensor:
            return torch.tensor([v for lab in labels for v in lab[key]])

        loss = sum(F.cross_entropy(heads[k](feats), target(k)) for k in ("kind", "color", "digit", "row", "col"))
        pooled = feats.view(len(batch), n_tok, -1).mean(1)
        occupancy = target("occupancy").view(len(batch), -1).float()
        loss = loss + occupancy_weight * F.binary_cross_entropy_with_logits(
            heads["occupancy"](pooled), occupancy) + F.cross_entropy(heads["number"](pooled), target("number"))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if progress:
            progress(step + 1, steps)
    model.eval()
    return losses


# --------------------------------------------------------------------------- SFT


def example_mean_loss(model, batch: dict) -> torch.Tensor:
    """Cross-entropy averaged over each example's target tokens, then over examples.

    Token-averaging over the batch would let long targets (grounding boxes: ~14 tokens) outweigh
    short ones (yes/no, a digit: 2 tokens) seven to one; every example weighs the same here.
    """
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits[:, :-1].float()
    target = labels[:, 1:]
    tok_loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
        reduction="none").view(target.shape)
    mask = (target != -100).float()
    return ((tok_loss * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


def sft(model, processor, examples: Sequence[T.ChatExample], *, steps: int, batch_size: int,
        lr: float, seed: int, warmup: int = 20, progress: ProgressFn | None = None) -> list[float]:
    """Supervised fine-tuning with loss on the target tokens only.

    AdamW (weight decay 0.01), linear warm-up then cosine decay to 10 %, gradient clipping at 1.
    Batches are drawn with replacement from ``examples`` by a seeded generator.

    Returns:
        The training loss of every step (mean token cross-entropy, nats).
    """
    pad_id = processor.tokenizer.pad_token_id
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        frac = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for step in range(steps):
        idx = torch.randint(len(examples), (batch_size,), generator=gen).tolist()
        # encoded per batch: pre-encoding every example would hold ~300 kB of pixel_values each
        batch = collate([encode(processor, examples[i]) for i in idx], pad_id)
        loss = example_mean_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if progress:
            progress(step + 1, steps)
    model.eval()
    return losses


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def generate_texts(model, processor, examples: Sequence[T.ChatExample], *, batch_size: int = 64,
                   max_new_tokens: int = 24) -> list[str]:
    """Greedy completions (special tokens stripped, ``<think>``/``<answer>`` tags kept)."""
    model.eval()
    tok = processor.tokenizer
    out: list[str] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        prompts = [prompt_text(processor, ex.messages) for ex in chunk]
        images = [ex.image for ex in chunk if ex.image is not None]
        inputs = processor(text=prompts, images=images or None, padding=True, return_tensors="pt")
        gen = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                             eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                             pad_token_id=tok.pad_token_id)
        new = gen[:, inputs["input_ids"].shape[1]:]
        out += tok.batch_decode(new, skip_special_tokens=True)
    return out


def evaluate(model, processor, eval_sets: dict[str, list[T.ChatExample]], *,
             batch_size: int = 64) -> dict[str, dict]:
    """Accuracy of ``model`` on each named evaluation set.

    Returns ``{name: {"n", "correct", "accuracy", "format_rate", "per_item": [0/1, ...],
    "samples": [first 3 completions]}}``.
    """
    results = {}
    for name, exs in eval_sets.items():
        texts = generate_texts(model, processor, exs, batch_size=batch_size)
        ok = [int(T.is_correct(ex.task, txt, ex.answer)) for ex, txt in zip(exs, texts)]
        fmt = [int(T.has_reasoning_format(txt)) for txt in texts]
        results[name] = {"n": len(ok), "correct": sum(ok), "accuracy": sum(ok) / max(1, len(ok)),
                         "format_rate": sum(fmt) / max(1, len(fmt)), "per_item": ok,
                         "samples": texts[:3]}
    return results


# --------------------------------------------------------------------------- GRPO


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
    optionally mixed with perception items (each scored by its own task). One policy update per
    generation batch. ``beta > 0`` adds trl's per-token KL penalty to a frozen reference model,
    which trl loads from ``model.config._name_or_path``: load ``model`` with ``from_pretrained``
    from the reference checkpoint (the IN stage). Parameters with ``requires_grad=False`` (frozen
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
             "answer": it.answer, "task": it.task} for it in items]
    ds = datasets.Dataset.from_list(rows)

    class _Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if progress:
                progress(state.global_step, steps)

    with tempfile.TemporaryDirectory(prefix="vlmdiag-grpo-") as out_dir:
        cfg = GRPOConfig(
            output_dir=out_dir, per_device_train_batch_size=prompts_per_step * num_generations,
            num_generations=num_generations, max_completion_length=max_completion_length,
            learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0, max_steps=steps,
            logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=False,
            beta=beta, temperature=temperature, seed=seed, data_seed=seed,
            dataloader_num_workers=0, disable_tqdm=True, max_grad_norm=1.0, weight_decay=0.0,
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


def set_determinism(seed: int, threads: int | None) -> None:
    """Seed python/torch RNGs, deterministic algorithms, and a fixed intra-op thread count."""
    random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
