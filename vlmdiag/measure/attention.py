"""Attention mass from reasoning-token queries to visual-token keys, per LLM layer and head
(paper §2.3, Eq. 1, Fig. 3).

How it is captured: a custom attention function, registered once through
``transformers.AttentionInterface`` under the name :data:`CAPTURE_IMPLEMENTATION`, is selected for
the LLM decoder layers only (their text config's ``_attn_implementation``) inside
:func:`capture_attention`, and restored in ``finally``. It returns the normal attention output
(computed by the model's own implementation: eager stays eager, anything else runs through PyTorch
SDPA) and, for the selected query rows only, recomputes ``softmax(q·kᵀ·scale + mask)`` in fp32 in
blocks of ``row_block`` rows, keeping just the per-head sums over the visual keys. No
``[layers, heads, S, S]`` tensor is ever materialised; the peak extra memory is one
``[B, heads, row_block, S]`` block. The mask is built by transformers' own mask functions
(registered through ``AttentionMaskInterface``: eager's additive mask for eager models, SDPA's
otherwise, which is None for plain causal attention), so causal, padding, sliding-window and
bidirectional-image masks are exactly those the model uses.

Definitions (SPEC §2): reasoning tokens R are the response tokens inside ``<think>…</think>`` when
the response has such a block, else the whole response; visual tokens V are the positions of the
image placeholder token. Two numbers per layer ℓ and head h:

* ``mass[ℓ, h] = (1/|R|) Σ_{i∈R} Σ_{j∈V} A^(ℓ,h)_ij`` — the magnitude the paper plots (0.01–0.10);
* ``mean[ℓ, h] = mass[ℓ, h] / |V|`` — Eq. 1 as printed (per-visual-token mean).

Averaging over heads gives A^(ℓ)(R→V) of Eq. 1.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import sys
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from vlmdiag.runtime.generate import Prompt, build_inputs, generate
from vlmdiag.runtime.model import LoadedModel, decoder_layers

#: Prefix of the capturing attention function's names in ``transformers.AttentionInterface``
#: (``…_eager`` with eager's additive mask, ``…_sdpa`` with SDPA's mask).
CAPTURE_IMPLEMENTATION = "vlmdiag_r2v_capture"

_STATE: contextvars.ContextVar["_CaptureState | None"] = contextvars.ContextVar(
    "vlmdiag_r2v_capture_state", default=None)


@dataclass
class _CaptureState:
    layer_of: dict[int, int]            # id(attention module) -> decoder layer index
    delegate: str                       # the model's own implementation for the output
    query_index: torch.Tensor           # [B, R_max] long, query positions (padded with 0)
    query_valid: torch.Tensor           # [B, R_max] bool
    key_mask: torch.Tensor              # [B, S] float32, 1 at visual keys
    row_block: int
    mass: dict[int, torch.Tensor] = field(default_factory=dict)   # layer -> [B, H] summed over rows


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def _delegate_forward(name: str, module, query, key, value, attention_mask, **kwargs):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if name == "eager":
        eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
        if eager is not None:
            return eager(module, query, key, value, attention_mask, **kwargs)
    # Flash kernels cannot take the eager additive mask; SDPA can, and gives the same output.
    return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, **kwargs)


def _capture_attention_forward(module, query, key, value, attention_mask, **kwargs):
    """The registered attention function: normal output + accumulated reasoning→visual mass.

    Shapes: query [B, Hq, Q, D]; key/value [B, Hkv, K, D]; attention_mask [B, 1, Q, K] additive.
    """
    state = _STATE.get()
    delegate = state.delegate if state is not None else "sdpa"
    out, weights = _delegate_forward(delegate, module, query, key, value, attention_mask, **kwargs)
    if state is None or id(module) not in state.layer_of or query.shape[2] != state.key_mask.shape[1]:
        return out, weights
    layer = state.layer_of[id(module)]
    with torch.no_grad():
        b, hq, q_len, d = query.shape
        k_len = key.shape[2]
        key_mask = state.key_mask[:, :k_len].to(torch.float32)[:, None, None, :]   # [B,1,1,K]
        total = torch.zeros(b, hq, dtype=torch.float32, device=query.device)
        if weights is not None:                                                    # eager: exact rows
            rows = state.query_index[:, None, :, None].expand(b, hq, -1, k_len)
            picked = weights.gather(2, rows).to(torch.float32)                      # [B,H,R,K]
            per_row = (picked * key_mask).sum(-1)                                   # [B,H,R]
            total += (per_row * state.query_valid[:, None, :]).sum(-1)
        else:
            scaling = kwargs.get("scaling")
            scaling = d ** -0.5 if scaling is None else scaling
            softcap = kwargs.get("softcap")
            keys = _repeat_kv(key, hq // key.shape[1])
            for start in range(0, state.query_index.shape[1], state.row_block):
                idx = state.query_index[:, start:start + state.row_block]          # [B,r]
                valid = state.query_valid[:, start:start + state.row_block]
                q_rows = query.gather(2, idx[:, None, :, None].expand(b, hq, -1, d))
                scores = torch.matmul(q_rows, keys.transpose(2, 3)) * scaling     # [B,H,r,K]
                if softcap is not None:
                    scores = torch.tanh(scores / softcap) * softcap
                if attention_mask is None:      # SDPA's causal skip: no padding, plain causal
                    causal = (torch.arange(k_len, device=query.device)[None, None, :]
                              > (idx + (k_len - q_len))[:, :, None])                  # [B,r,K]
                    scores = scores.masked_fill(causal[:, None], torch.finfo(scores.dtype).min)
                else:
                    mask = attention_mask[:, :, :, :k_len]
                    mask_rows = mask.gather(2, idx[:, None, :, None].expand(b, mask.shape[1], -1, k_len))
                    if mask_rows.dtype == torch.bool:
                        scores = scores.masked_fill(~mask_rows, torch.finfo(scores.dtype).min)
                    else:
                        scores = scores + mask_rows
                probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
                on_visual = torch.matmul(probs, key_mask.transpose(-1, -2)).squeeze(-1)   # [B,H,r]
                del probs, scores
                total += (on_visual * valid[:, None, :]).sum(-1)
        state.mass[layer] = state.mass.get(layer, 0) + total
    return out, weights


def _implementation_name(delegate: str) -> str:
    return CAPTURE_IMPLEMENTATION + ("_eager" if delegate == "eager" else "_sdpa")


def _register() -> None:
    """Register the capturing function twice: with eager's additive float mask (when the model
    runs eager) and with SDPA's mask (None for plain causal, else boolean) otherwise, so the
    capture never builds a mask the model itself would not have built."""
    from transformers import AttentionInterface
    from transformers.masking_utils import (ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface,
                                            eager_mask, sdpa_mask)

    for delegate, mask_function in (("eager", eager_mask), ("sdpa", sdpa_mask)):
        name = _implementation_name(delegate)
        if name not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
            AttentionMaskInterface.register(name, mask_function)
        AttentionInterface.register(name, _capture_attention_forward)


def _attention_module(layer):
    attn = getattr(layer, "self_attn", None)
    if attn is None:
        raise TypeError(f"{type(layer).__name__} has no self_attn submodule; attention capture "
                        "needs the adapter's decoder layers to expose one")
    return attn


@contextlib.contextmanager
def capture_attention(loaded: LoadedModel, query_mask: torch.Tensor, key_mask: torch.Tensor, *,
                      row_block: int = 256) -> Iterator[dict[int, torch.Tensor]]:
    """Within the block, forward passes of ``loaded.model`` accumulate reasoning→visual mass.

    Only the LLM decoder layers switch to the capturing attention; the vision tower keeps its own.
    Run exactly one forward pass over the full sequence inside the block.

    Args:
        loaded: the model.
        query_mask: bool [B, S], True at reasoning-token (query) positions.
        key_mask: bool [B, S], True at visual-token (key) positions.
        row_block: query rows recomputed at once (bounds the extra memory).

    Yields:
        A dict filled after the forward pass: layer index → float32 tensor [B, heads], the
        attention mass on the visual keys summed over the query rows.
    """
    _register()
    layers = decoder_layers(loaded)
    attn_modules = [_attention_module(layer) for layer in layers]
    configs = {id(m.config): m.config for m in attn_modules}
    counts = query_mask.sum(1)
    r_max = max(int(counts.max()), 1)
    index = torch.zeros(query_mask.shape[0], r_max, dtype=torch.long, device=query_mask.device)
    valid = torch.zeros(query_mask.shape[0], r_max, dtype=torch.float32, device=query_mask.device)
    for row in range(query_mask.shape[0]):
        pos = query_mask[row].nonzero().flatten()
        index[row, :len(pos)] = pos
        valid[row, :len(pos)] = 1.0
    originals = {key: cfg._attn_implementation for key, cfg in configs.items()}
    delegate = next(iter(originals.values())) or "sdpa"
    state = _CaptureState(layer_of={id(m): i for i, m in enumerate(attn_modules)}, delegate=delegate,
                          query_index=index, query_valid=valid, key_mask=key_mask.to(torch.float32),
                          row_block=row_block)
    token = _STATE.set(state)
    try:
        for cfg in configs.values():
            cfg._attn_implementation_internal = _implementation_name(delegate)
        yield state.mass
    finally:
        for key, cfg in configs.items():
            cfg._attn_implementation_internal = originals[key]
        _STATE.reset(token)


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
    """

    mass: np.ndarray
    mean: np.ndarray
    n_reasoning: int
    n_visual: int
    response: str
    mode: str


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


def _extend_inputs(inputs: dict, response_ids: torch.Tensor) -> dict:
    """Append response ids (B = 1) to prompt inputs; per-token tensors get 0 (text), the
    attention mask gets 1."""
    prompt_len = inputs["input_ids"].shape[1]
    extra = response_ids.shape[-1]
    out = dict(inputs)
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.ndim == 2 and value.shape == (1, prompt_len):
            fill = response_ids.view(1, -1) if key == "input_ids" else torch.full(
                (1, extra), 1 if key == "attention_mask" else 0, dtype=value.dtype, device=value.device)
            out[key] = torch.cat([value, fill.to(value.device, value.dtype)], dim=1)
    return out


def attention_on_sequence(loaded: LoadedModel, inputs: dict, query_mask: torch.Tensor, *,
                          row_block: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One forward pass over a full sequence (B rows), capturing reasoning→visual mass.

    Args:
        loaded: the model.
        inputs: model inputs for the whole sequence (prompt + response), e.g. from
            :func:`vlmdiag.runtime.generate.build_inputs` extended with the response ids.
        query_mask: bool [B, S], True at reasoning-token positions.
        row_block: see :func:`capture_attention`.

    Returns:
        ``(mass [B, layers, heads], n_reasoning [B], n_visual [B])``; ``mass`` is already divided
        by ``n_reasoning`` (NaN where a row has no reasoning token).
    """
    key_mask = inputs["input_ids"] == loaded.image_token_id
    n_layers = len(decoder_layers(loaded))
    with capture_attention(loaded, query_mask, key_mask, row_block=row_block) as sums:
        with torch.inference_mode():
            loaded.model(**inputs, use_cache=False)
    missing = [i for i in range(n_layers) if i not in sums]
    if missing:
        raise RuntimeError(f"attention capture saw no attention call for layers {missing}; the "
                           "model does not dispatch through transformers' AttentionInterface")
    stacked = torch.stack([sums[i] for i in range(n_layers)], dim=1).double().cpu().numpy()  # [B,L,H]
    n_r = query_mask.sum(1).cpu().numpy()
    n_v = key_mask.sum(1).cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = stacked / n_r[:, None, None]
    return mass, n_r, n_v


def _measure_one(loaded, prompt: Prompt, response_ids: np.ndarray, response_text: str, mode: str,
                 row_block: int) -> AttentionMass:
    inputs = build_inputs(loaded, [prompt])
    ids = torch.as_tensor(response_ids, dtype=torch.long, device=loaded.device)
    full = _extend_inputs(inputs, ids)
    prompt_len = inputs["input_ids"].shape[1]
    query_mask = torch.zeros_like(full["input_ids"], dtype=torch.bool)
    query_mask[0, prompt_len:] = torch.as_tensor(reasoning_token_mask(loaded.tokenizer, response_ids),
                                                 device=loaded.device)
    mass, n_r, n_v = attention_on_sequence(loaded, full, query_mask, row_block=row_block)
    n_visual = int(n_v[0])
    if n_visual == 0:
        raise ValueError("attention measurement: the prompt has no image placeholder token "
                         f"(id {loaded.image_token_id}); visual tokens cannot be found")
    return AttentionMass(mass=mass[0], mean=mass[0] / n_visual, n_reasoning=int(n_r[0]),
                         n_visual=n_visual, response=response_text, mode=mode)


def attention_own_generation(loaded: LoadedModel, prompts: Sequence[Prompt], *,
                             max_new_tokens: int = 128, batch_size: int = 8,
                             row_block: int = 256) -> list[AttentionMass]:
    """Reasoning→visual attention on each model's own greedy response (paper Fig. 3).

    The response is generated (batched, greedy), then one forward pass over prompt + response
    recomputes exactly the attention rows the reasoning tokens had while being generated
    (causal attention), capturing only those rows.

    Args:
        loaded: the model.
        prompts: image prompts (each must contain the image).
        max_new_tokens: response budget.
        batch_size: prompts per generation batch.
        row_block: see :func:`capture_attention`.

    Returns:
        One :class:`AttentionMass` (``mode="own"``) per prompt; an empty response gives a NaN mass.

    Raises:
        ValueError: a prompt has no image.
    """
    if any(p.image is None for p in prompts):
        raise ValueError("attention_own_generation: every prompt needs an image")
    gens = generate(loaded, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return [_measure_one(loaded, p, g.token_ids, g.text, "own", row_block) for p, g in zip(prompts, gens)]


def attention_teacher_forced(loaded: LoadedModel, prompts: Sequence[Prompt], responses: Sequence[str], *,
                             row_block: int = 256) -> list[AttentionMass]:
    """Reasoning→visual attention on one shared response per prompt (teacher forcing).

    The same text is fed to every model compared, controlling for differences in what they
    wrote (SPEC §2). The response is tokenized with the model's tokenizer (no special tokens).

    Returns:
        One :class:`AttentionMass` (``mode="teacher_forced"``) per prompt.

    Raises:
        ValueError: lengths differ, or a prompt has no image.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"attention_teacher_forced: {len(prompts)} prompts but {len(responses)} responses")
    if any(p.image is None for p in prompts):
        raise ValueError("attention_teacher_forced: every prompt needs an image")
    out = []
    for prompt, response in zip(prompts, responses):
        ids = np.asarray(loaded.tokenizer(response, add_special_tokens=False)["input_ids"], dtype=np.int64)
        out.append(_measure_one(loaded, prompt, ids, response, "teacher_forced", row_block))
    return out
