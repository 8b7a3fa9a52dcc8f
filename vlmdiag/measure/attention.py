"""Attention mass from reasoning-token queries to visual-token keys, per LLM layer and head
(paper §2.3, Eq. 1, Fig. 3).

How it is captured: :mod:`vlmdiag.measure.attention_capture` (a function registered through
``transformers.AttentionInterface``; no model class is patched; no ``[layers, heads, S, S]`` tensor
is materialised). Items are measured in left-padded batches of full sequences (prompt + response).

Definitions (SPEC §2): reasoning tokens R are the response tokens inside ``<think>…</think>`` when
the response has such a block, else the whole response; visual tokens V are the positions of the
image placeholder token. Two numbers per layer ℓ and head h:

* ``mass[ℓ, h] = (1/|R|) Σ_{i∈R} Σ_{j∈V} A^(ℓ,h)_ij`` — the magnitude the paper plots (0.01–0.10);
* ``mean[ℓ, h] = mass[ℓ, h] / |V|`` — Eq. 1 as printed (per-visual-token mean).

Averaging over heads gives A^(ℓ)(R→V) of Eq. 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from vlmdiag.measure.attention_capture import (  # noqa: F401  (re-exported)
    CAPTURE_IMPLEMENTATION, capture_attention, sink_tokens)
from vlmdiag.runtime.generate import DEFAULT_BATCH_SIZE, Prompt, extend_batch, generate, pad_id
from vlmdiag.runtime.inputs import cached_inputs
from vlmdiag.runtime.model import LoadedModel, decoder_layers

#: τ of the visual-sink test (Kang et al. 2025, §3: φ(h) ≥ 20 marks a sink token).
SINK_RATIO = 20.0

@dataclass(frozen=True)
class AttentionMass:
    """Reasoning→visual attention of one item (paper Eq. 1).

    Attributes:
        mass: float64 [layers, heads]; mean over reasoning tokens of the attention summed over
            visual keys (share of a row's attention, 0..1).
        mean: float64 [layers, heads]; ``mass / n_visual`` (Eq. 1 as printed).
        n_reasoning: |R|, number of reasoning-token queries.
        n_visual: |V|, number of visual-token keys.
        response: the response text whose tokens were the queries.
        mode: ``"own"`` (the model's own greedy generation) or ``"teacher_forced"``.
        mass_without_sinks: float64 [layers, heads]: the mass on the visual keys that are not
            visual sinks at that layer (:func:`~vlmdiag.measure.attention_capture.sink_tokens`);
            None when sinks were not looked for.
        sinks: int64 [layers]: visual sink tokens per layer (None when not looked for).
    """

    mass: np.ndarray
    mean: np.ndarray
    n_reasoning: int
    n_visual: int
    response: str
    mode: str
    mass_without_sinks: np.ndarray | None = None
    sinks: np.ndarray | None = None


_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)


def reasoning_char_span(text: str) -> tuple[int, int]:
    """Character span of the reasoning in a response: the inside of the first ``<think>…</think>``
    block (an unclosed block runs to the end), else the whole text."""
    match = _THINK.search(text)
    if match is None:
        return 0, len(text)
    return match.start(1), match.end(1)


def reasoning_token_mask(tokenizer, response_ids: Sequence[int]) -> np.ndarray:
    """Which response tokens are reasoning tokens (SPEC §2).

    A token counts when any of its characters falls inside :func:`reasoning_char_span` of the
    decoded response (prefix decoding gives each token's character range).

    Returns:
        bool array [T].
    """
    ids = list(int(i) for i in response_ids)
    if _THINK.search(tokenizer.decode(ids, skip_special_tokens=False)) is None:
        return np.ones(len(ids), dtype=bool)
    ends, text = [], ""
    for i in range(len(ids)):     # O(T^2) decoding, only for responses with a <think> block
        text = tokenizer.decode(ids[:i + 1], skip_special_tokens=False)
        ends.append(len(text))
    start, end = reasoning_char_span(text)
    mask = np.zeros(len(ids), dtype=bool)
    begin = 0
    for i, e in enumerate(ends):
        if e > begin:        # the token's characters are text[begin:e]
            mask[i] = begin < end and e > start
        else:                # a byte fragment that added no character yet: place it at `begin`
            mask[i] = start <= begin < end
        begin = max(begin, e)
    return mask


@dataclass(frozen=True)
class SequenceCapture:
    """What one captured forward pass over B full sequences gives.

    Attributes:
        mass: float64 [B, layers, heads], mean over each row's reasoning queries of the attention
            on visual keys (NaN where a row has no reasoning token).
        mass_without_sinks: same, on visual keys that are not sinks (None without ``sink_ratio``).
        sinks: int64 [B, layers], visual sink tokens per row and layer (None without ``sink_ratio``).
        n_reasoning / n_visual: int arrays [B].
    """

    mass: np.ndarray
    mass_without_sinks: np.ndarray | None
    sinks: np.ndarray | None
    n_reasoning: np.ndarray
    n_visual: np.ndarray


def capture_on_sequence(loaded: LoadedModel, inputs: dict, query_mask: torch.Tensor, *, row_block: int = 256,
                        sink_ratio: float | None = None) -> SequenceCapture:
    """One forward pass over full sequences (B rows), capturing reasoning→visual mass (and, with
    ``sink_ratio``, the mass without visual sinks; see :mod:`vlmdiag.measure.attention_capture`).

    Raises:
        RuntimeError: a decoder layer did not dispatch through ``AttentionInterface``.
    """
    key_mask = inputs["input_ids"] == loaded.image_token_id
    n_layers = len(decoder_layers(loaded))
    sinks: dict[int, torch.Tensor] = {}
    with capture_attention(loaded, query_mask, key_mask, row_block=row_block, sink_ratio=sink_ratio,
                           sinks_out=sinks) as sums:
        with torch.inference_mode():
            loaded.model(**inputs, use_cache=False)
    missing = [i for i in range(n_layers) if i not in sums]
    if missing:
        raise RuntimeError(f"attention capture saw no attention call for layers {missing}; the "
                           "model does not dispatch through transformers' AttentionInterface")
    stacked = torch.stack([sums[i] for i in range(n_layers)], dim=1).double().cpu().numpy()  # [B,L,H(,2)]
    n_r = query_mask.sum(1).cpu().numpy()
    n_v = key_mask.sum(1).cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        per_row = stacked / n_r.reshape(-1, *([1] * (stacked.ndim - 1)))
    if sink_ratio is None:
        return SequenceCapture(per_row, None, None, n_r, n_v)
    counts = np.stack([(sinks[i].sum(1).cpu().numpy() if i in sinks else np.zeros(len(n_r), dtype=np.int64))
                       for i in range(n_layers)], axis=1).astype(np.int64)
    return SequenceCapture(per_row[..., 0], per_row[..., 1], counts, n_r, n_v)


def attention_on_sequence(loaded: LoadedModel, inputs: dict, query_mask: torch.Tensor, *,
                          row_block: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`capture_on_sequence` without sinks, as ``(mass [B, layers, heads], n_reasoning [B],
    n_visual [B])``; ``mass`` is already divided by ``n_reasoning`` (NaN where a row has none)."""
    got = capture_on_sequence(loaded, inputs, query_mask, row_block=row_block)
    return got.mass, got.n_reasoning, got.n_visual


def _measure_many(loaded, prompts: Sequence[Prompt], responses: Sequence[tuple[np.ndarray, str]], mode: str, *,
                  row_block: int, batch_size: int, sink_ratio: float | None,
                  progress: Callable[[int, int], None] | None) -> list[AttentionMass]:
    """Capture each (prompt, response) in left-padded batches of full sequences."""
    out: list[AttentionMass | None] = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: (prompts[i].image.size[0] * prompts[i].image.size[1],
                                                       len(responses[i][0])))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        inputs = cached_inputs(loaded, [prompts[i] for i in chunk])
        ids = [torch.as_tensor(responses[i][0], dtype=torch.long) for i in chunk]
        full = extend_batch(inputs, ids, pad=pad_id(loaded))
        query_mask = torch.zeros_like(full["input_ids"], dtype=torch.bool)
        for b, i in enumerate(chunk):
            n = len(ids[b])
            if n:
                query_mask[b, -n:] = torch.as_tensor(reasoning_token_mask(loaded.tokenizer, responses[i][0]),
                                                     device=query_mask.device)
        got = capture_on_sequence(loaded, full, query_mask, row_block=row_block, sink_ratio=sink_ratio)
        for b, i in enumerate(chunk):
            n_visual = int(got.n_visual[b])
            if n_visual == 0:
                raise ValueError("attention measurement: the prompt has no image placeholder token "
                                 f"(id {loaded.image_token_id}); visual tokens cannot be found")
            out[i] = AttentionMass(mass=got.mass[b], mean=got.mass[b] / n_visual, n_reasoning=int(got.n_reasoning[b]),
                                   n_visual=n_visual, response=responses[i][1], mode=mode,
                                   mass_without_sinks=None if got.mass_without_sinks is None else got.mass_without_sinks[b],
                                   sinks=None if got.sinks is None else got.sinks[b])
        if progress is not None:
            progress(min(start + batch_size, len(order)), len(order))
    return out  # type: ignore[return-value]


def attention_own_generation(loaded: LoadedModel, prompts: Sequence[Prompt], *,
                             max_new_tokens: int = 128, batch_size: int = DEFAULT_BATCH_SIZE,
                             row_block: int = 256, sink_ratio: float | None = None,
                             progress: Callable[[int, int], None] | None = None) -> list[AttentionMass]:
    """Reasoning→visual attention on each model's own greedy response (paper Fig. 3).

    The responses are generated (batched, greedy), then one forward pass per batch over prompt +
    response recomputes exactly the attention rows the reasoning tokens had while being
    generated (causal attention), capturing only those rows.

    Args:
        loaded: the model.
        prompts: image prompts (each must contain the image).
        max_new_tokens: response budget.
        batch_size: prompts per generation batch and per captured forward pass.
        row_block: see :func:`capture_attention`.
        sink_ratio: also measure the mass without visual sinks (τ of
            :func:`~vlmdiag.measure.attention_capture.sink_tokens`); None: do not look for sinks.
        progress: ``progress(done, total)`` over the generation, then over the capture.

    Returns:
        One :class:`AttentionMass` (``mode="own"``) per prompt; an empty response gives a NaN mass.

    Raises:
        ValueError: a prompt has no image.
    """
    if any(p.image is None for p in prompts):
        raise ValueError("attention_own_generation: every prompt needs an image")
    gens = generate(loaded, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
    return _measure_many(loaded, prompts, [(g.token_ids, g.text) for g in gens], "own", row_block=row_block,
                         batch_size=batch_size, sink_ratio=sink_ratio, progress=progress)


def attention_teacher_forced(loaded: LoadedModel, prompts: Sequence[Prompt], responses: Sequence[str], *,
                             row_block: int = 256, batch_size: int = DEFAULT_BATCH_SIZE,
                             sink_ratio: float | None = None,
                             progress: Callable[[int, int], None] | None = None) -> list[AttentionMass]:
    """Reasoning→visual attention on one shared response per prompt (teacher forcing).

    The same text is fed to every model compared, controlling for differences in what they
    wrote (SPEC §2). The response is tokenized with the model's tokenizer (no special tokens).
    ``batch_size``, ``sink_ratio`` and ``progress`` as in :func:`attention_own_generation`.

    Returns:
        One :class:`AttentionMass` (``mode="teacher_forced"``) per prompt.

    Raises:
        ValueError: lengths differ, or a prompt has no image.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"attention_teacher_forced: {len(prompts)} prompts but {len(responses)} responses")
    if any(p.image is None for p in prompts):
        raise ValueError("attention_teacher_forced: every prompt needs an image")
    ids = [np.asarray(loaded.tokenizer(r, add_special_tokens=False)["input_ids"], dtype=np.int64) for r in responses]
    return _measure_many(loaded, prompts, list(zip(ids, responses)), "teacher_forced", row_block=row_block,
                         batch_size=batch_size, sink_ratio=sink_ratio, progress=progress)
