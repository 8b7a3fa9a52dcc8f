"""Supervised training of the model organism: encoding chat examples into model inputs, vision
pre-training of the vision tower (:func:`pretrain_vision`) and SFT (:func:`sft`).

All prompts are the pinned layouts of :mod:`vlmdiag.probes.prompts`, rendered with the processor's
chat template and ``add_generation_prompt=True``, exactly as the diagnostics prompt the model;
every forward pass gets ``mm_token_type_ids``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from vlmdiag.organism import tasks as T

ProgressFn = Callable[[int, int], None]  # (steps done, steps total)


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

