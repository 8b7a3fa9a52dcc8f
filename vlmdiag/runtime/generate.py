"""Prompt building and batched greedy generation through the checkpoint's own processor.

Every multimodal tensor the processor returns (``pixel_values``, ``image_grid_thw``,
``mm_token_type_ids``, ``image_sizes``, ``pixel_attention_mask``, ...) is passed to the model:
Qwen2.5-VL silently falls back to 1-D RoPE without ``mm_token_type_ids``
(``notes/cpu-feasibility.md`` §1). Batches are left-padded; a test shows batched answers equal
unbatched ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import contextlib
from typing import Callable, ContextManager, Sequence

import numpy as np
import torch
from PIL import Image

from vlmdiag.probes.prompts import image_message, text_message
from vlmdiag.runtime.model import LoadedModel


@dataclass(frozen=True)
class Prompt:
    """One prompt: chat messages (pinned layouts of :mod:`vlmdiag.probes.prompts`) and at most one image."""

    messages: list
    image: Image.Image | None = None


def image_prompt(question: str, image: Image.Image, answer_format: str = "none") -> Prompt:
    """f(i, p): the image, then the question (and the answer instruction of ``answer_format``,
    :data:`vlmdiag.probes.prompts.ANSWER_FORMATS`)."""
    return Prompt(image_message(question, answer_format), image.convert("RGB"))


def black_image(image: Image.Image) -> Image.Image:
    """An all-black RGB image of the same pixel size (paper Eqs. 4–5, f(b, p))."""
    return Image.new("RGB", image.size, (0, 0, 0))


def black_image_prompt(question: str, image: Image.Image, answer_format: str = "none") -> Prompt:
    """f(b, p): a black image of the same size as ``image``, then the question."""
    return Prompt(image_message(question, answer_format), black_image(image))


def text_prompt(question: str, answer_format: str = "none") -> Prompt:
    """f(p): the question alone."""
    return Prompt(text_message(question, answer_format), None)


@dataclass(frozen=True)
class Generation:
    """One greedy generation.

    Attributes:
        text: the decoded response, special tokens removed, cut at the first end-of-sequence token.
        token_ids: int64 array [T] of generated ids up to and excluding the first EOS/pad.
        prompt_ids: int64 array [P] of prompt ids without padding.
        hit_budget: generation stopped because ``max_new_tokens`` ran out, not at an EOS token
            (a reasoning model cut off inside ``<think>``; grading reports it as truncated).
    """

    text: str
    token_ids: np.ndarray = field(repr=False)
    prompt_ids: np.ndarray = field(repr=False)
    hit_budget: bool = False


def _tokenizer(loaded: LoadedModel):
    return loaded.tokenizer


def build_inputs(loaded: LoadedModel, prompts: Sequence[Prompt]) -> dict:
    """:func:`build_cpu_inputs` moved to ``loaded.device`` (floating tensors in ``loaded.dtype``)."""
    return to_device(build_cpu_inputs(loaded, prompts), loaded)


def build_cpu_inputs(loaded: LoadedModel, prompts: Sequence[Prompt]) -> dict:
    """Tokenize prompts through the chat template and the processor, left-padded.

    All prompts of one call must either all carry an image or all be text-only.

    Args:
        loaded: the model and its processor.
        prompts: the prompts of one batch.

    Returns:
        A dict of CPU tensors as the processor returns them: ``input_ids`` [B, S],
        ``attention_mask`` [B, S] and every extra tensor (``pixel_values``, ``image_grid_thw``, ...).

    Raises:
        ValueError: a mix of image and text-only prompts.
    """
    with_image = [p.image is not None for p in prompts]
    if any(with_image) and not all(with_image):
        raise ValueError("build_inputs: a batch mixes image and text-only prompts; split it "
                         "(generate() does this for you)")
    processor = loaded.processor
    tokenizer = _tokenizer(loaded)
    texts = [processor.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=False)
             for p in prompts]
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        if all(with_image):
            batch = processor(text=texts, images=[[p.image] for p in prompts]
                              if loaded.adapter.processor_images == "per_prompt" else [p.image for p in prompts],
                              return_tensors="pt", padding=True)
        elif processor is tokenizer:
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        else:
            batch = processor(text=texts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = old_side
    return dict(batch)


def to_device(batch: dict, loaded: LoadedModel) -> dict:
    """Move tensors to the model's device; floating tensors also to its dtype."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(loaded.device)
            if value.is_floating_point():
                value = value.to(loaded.dtype)
        out[key] = value
    return out


def stop_ids(loaded: LoadedModel) -> list[int]:
    """Token ids that end a response: the tokenizer's EOS and the generation config's EOS ids."""
    ids = set()
    tokenizer = _tokenizer(loaded)
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    eos = getattr(loaded.model.generation_config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(int(i) for i in eos)
    return sorted(ids)


def pad_id(loaded: LoadedModel) -> int:
    """The padding id (the tokenizer's pad token, else the first stop id)."""
    tokenizer = _tokenizer(loaded)
    if tokenizer is not None and tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    pad = getattr(loaded.model.generation_config, "pad_token_id", None)
    if isinstance(pad, int):
        return pad
    stops = stop_ids(loaded)
    return stops[0] if stops else 0


def cache_kwarg() -> str:
    """The keyword ``generate`` and the models' forward take a KV cache under: ``cache`` from
    transformers 5.25 (which warns that ``past_key_values`` goes), ``past_key_values`` before."""
    from transformers.generation import utils

    return "cache" if "cache" in getattr(utils, "ALL_CACHE_NAMES", ()) else "past_key_values"


def greedy_generate_inputs(loaded: LoadedModel, inputs: dict, *, max_new_tokens: int,
                           past_key_values=None) -> torch.Tensor:
    """``model.generate`` with greedy decoding on already built inputs.

    The image placeholder token is suppressed in the output: a response holding it could not be
    fed back (teacher forcing, attention capture) without the model expecting another image.

    Returns:
        int64 tensor [B, S + T']: prompt and generated ids (T' ≤ max_new_tokens; rows that stop
        early are padded with the pad id).
    """
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, temperature=None,
                  top_p=None, top_k=None, pad_token_id=pad_id(loaded), eos_token_id=stop_ids(loaded),
                  suppress_tokens=[loaded.image_token_id])
    if past_key_values is not None:
        kwargs[cache_kwarg()] = past_key_values
    with torch.inference_mode():
        return loaded.model.generate(**inputs, **kwargs)


def split_generation(loaded: LoadedModel, inputs: dict, sequences: torch.Tensor) -> list[Generation]:
    """Cut ``generate`` output into per-row :class:`Generation` values (padding and EOS removed).
    A row without a stop token ran to the end of ``sequences``: ``generate`` only stops before
    ``max_new_tokens`` once every row has emitted one, so that row hit the budget."""
    prompt_len = inputs["input_ids"].shape[1]
    stops = set(stop_ids(loaded))
    tokenizer = _tokenizer(loaded)
    # one copy to the CPU per batch, not three per row (each copy from a GPU waits for its queue)
    masks = inputs["attention_mask"].bool().cpu()
    input_ids, sequences = inputs["input_ids"].cpu(), sequences.cpu()
    out = []
    for row in range(sequences.shape[0]):
        prompt_ids = input_ids[row][masks[row]].numpy()
        gen = sequences[row, prompt_len:].tolist()
        cut = next((i for i, t in enumerate(gen) if t in stops), None)
        hit_budget = cut is None
        gen = np.asarray(gen if hit_budget else gen[:cut], dtype=np.int64)
        text = tokenizer.decode(gen.tolist(), skip_special_tokens=True) if tokenizer is not None else ""
        out.append(Generation(text=text, token_ids=gen, prompt_ids=prompt_ids.astype(np.int64),
                              hit_budget=hit_budget))
    return out


#: Prompts per ``generate`` call unless the caller says otherwise. Larger batches amortise the
#: per-step Python of ``model.generate`` (bench/RESULTS.md "Generation sweeps"); answers do not
#: depend on it (left padding; tests compare every row with its unbatched answer).
DEFAULT_BATCH_SIZE = 32

#: Per batch: ``(row indices into prompts, built inputs) -> (context manager, extra generate kwargs)``.
PerBatch = Callable[[list[int], dict], tuple[ContextManager, dict]]


def extend_inputs(inputs: dict, response_ids: torch.Tensor) -> dict:
    """Append response ids (B = 1) to prompt inputs; per-token tensors get 0 (text), the
    attention mask gets 1."""
    return extend_batch(inputs, [response_ids.view(-1)], pad=0)


def extend_batch(inputs: dict, responses: Sequence[torch.Tensor], *, pad: int) -> dict:
    """Append each row's response ids to left-padded prompt inputs and left-pad the result again:
    per-token tensors ([B, P]) get the ids / 1 (attention mask) / 0 (token types) after each
    row's prompt; other tensors (pixels, grids) are kept. Returns [B, max(P_b + T_b)] tensors."""
    mask = inputs["attention_mask"].bool()
    shape = inputs["input_ids"].shape
    lengths = [int(mask[b].sum()) + len(r) for b, r in enumerate(responses)]
    width = max(lengths)
    out = dict(inputs)
    for key, value in inputs.items():
        if not (isinstance(value, torch.Tensor) and value.ndim == 2 and value.shape == shape):
            continue
        fill_pad = pad if key == "input_ids" else 0
        rows = []
        for b, response in enumerate(responses):
            tail = response.to(value.device, value.dtype) if key == "input_ids" else torch.full(
                (len(response),), 1 if key == "attention_mask" else 0, dtype=value.dtype, device=value.device)
            row = torch.cat([value[b][mask[b]], tail])
            rows.append(torch.cat([row.new_full((width - len(row),), fill_pad), row]))
        out[key] = torch.stack(rows)
    return out


def batch_order(prompts: Sequence[Prompt]) -> list[list[int]]:
    """The prompt groups that may share a batch: image prompts, then text-only ones, each sorted
    (stably) by image area and text length, so a batch holds prompts of similar length and pads
    little. Returns lists of indices into ``prompts``."""
    def size(i: int) -> tuple[int, int]:
        image = prompts[i].image
        return (image.size[0] * image.size[1] if image is not None else 0, len(repr(prompts[i].messages)))

    groups = []
    for has_image in (True, False):
        order = [i for i, p in enumerate(prompts) if (p.image is not None) == has_image]
        groups.append(sorted(order, key=size))
    return [g for g in groups if g]


def generate(loaded: LoadedModel, prompts: Sequence[Prompt], *, max_new_tokens: int = 128,
             batch_size: int = DEFAULT_BATCH_SIZE, progress: Callable[[int, int], None] | None = None,
             per_batch: PerBatch | None = None) -> list[Generation]:
    """Batched greedy generation (paper Table 5: temperature 0, no sampling).

    Image and text-only prompts are batched separately, each group sorted by length
    (:func:`batch_order`); the order of the result follows ``prompts``. Left padding keeps every
    row's answer equal to its unbatched answer. Built inputs are reused across calls with the same
    prompts and processor (:data:`vlmdiag.runtime.inputs.INPUTS`), so a sweep over model states
    (transplant variants, frozen runs) runs the processor once.

    Args:
        loaded: model and processor.
        prompts: the prompts.
        max_new_tokens: generation budget per prompt (the paper's Table 5: 128; its code 2048–8192
            for reasoning models). A response that runs out of it has ``hit_budget`` set.
        batch_size: prompts per ``generate`` call.
        progress: ``progress(done, total)`` after each batch (prompts answered so far).
        per_batch: for each batch, a context manager to run it in and extra ``generate`` keyword
            arguments (e.g. a per-row layer skip, a K/V-swapping cache); see :data:`PerBatch`.

    Returns:
        One :class:`Generation` per prompt, in order.

    Raises:
        ValueError: ``batch_size < 1``.
    """
    from vlmdiag.runtime.inputs import cached_inputs

    if batch_size < 1:
        raise ValueError(f"generate: batch_size={batch_size} must be at least 1")
    results: list[Generation | None] = [None] * len(prompts)
    done = 0
    for order in batch_order(prompts):
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            inputs = cached_inputs(loaded, [prompts[i] for i in chunk])
            context, extra = per_batch(chunk, inputs) if per_batch is not None else (contextlib.nullcontext(), {})
            with context:
                sequences = greedy_generate_inputs(loaded, inputs, max_new_tokens=max_new_tokens, **extra)
            for i, gen in zip(chunk, split_generation(loaded, inputs, sequences)):
                results[i] = gen
            done += len(chunk)
            if progress is not None:
                progress(done, len(prompts))
    return results  # type: ignore[return-value]
