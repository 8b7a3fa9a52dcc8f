"""Capturing reasoning→visual attention mass inside a normal forward pass (paper §2.3, Eq. 1).

A custom attention function, registered once through ``transformers.AttentionInterface`` under
the name :data:`CAPTURE_IMPLEMENTATION`, is selected for the LLM decoder layers only (their text
config's ``_attn_implementation``) inside :func:`capture_attention`, and restored in ``finally``.
No model class is patched. It returns the normal attention output and accumulates, per layer and
head, the attention mass of the selected query rows on the visual keys. Three ways, by model:

* **fp32, SDPA** (the CPU case): one SDPA call with indicator channels appended to the values.
  q, k and v are zero-padded by 8 channels (zeros leave q·kᵀ unchanged; the padding keeps one
  head dimension, so PyTorch keeps its fused kernel); value channel ``D + c`` holds 1 at the keys
  of indicator ``c`` (visual; visual without sinks). The output's channel ``D + c`` is then
  exactly Σ_j softmax(q·kᵀ·scale + mask)_ij · 1[j ∈ c] for every query row i — the mass — and
  its first D channels are the attention output itself (bit-identical to plain SDPA in tests).
  Cost: the attention with head dim D + 8 instead of D; no row is computed twice.
* **bf16/fp16, SDPA** (GPUs): the output would round the mass to 8 bits, so the selected rows are
  recomputed in fp32, ``softmax(q·kᵀ·scale + mask)`` in blocks of ``row_block`` rows; the peak
  extra memory is one ``[B, heads, row_block, S]`` block.
* **eager**: the model's own weights (it returns them) are read at the selected rows.

The mask is built by transformers' own mask functions (registered through
``AttentionMaskInterface``: eager's additive mask for eager models, SDPA's otherwise, which is None
for plain causal attention), so causal, padding, sliding-window and bidirectional-image masks are
exactly those the model uses.

Visual attention sinks (Kang et al., "See What You Are Told: Visual Attention Sink in Large
Multimodal Models", arXiv 2503.03321, §3): a visual token whose residual stream entering layer ℓ has
a massive activation, φ(h) = max_d |h_d| / RMS(h) ≥ τ (their Eq. 3 with the sink dimensions taken
as every dimension; τ = 20 there), is a sink at layer ℓ. With ``sink_ratio`` set, forward
pre-hooks on the decoder layers mark each layer's sinks and the capture also returns the mass on
the visual keys that are not sinks.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from dataclasses import dataclass, field
from typing import Iterator

import torch

from vlmdiag.runtime.model import LoadedModel, decoder_layers

#: Prefix of the capturing attention function's names in ``transformers.AttentionInterface``
#: (``…_eager`` with eager's additive mask, ``…_sdpa`` with SDPA's mask).
CAPTURE_IMPLEMENTATION = "vlmdiag_r2v_capture"
#: Zero channels appended to q, k and v on the fused path (indicators live in the value's).
PAD_CHANNELS = 8
#: Use the fused path where it applies (fp32, SDPA); False forces the fp32 recompute of the rows
#: (bench/bench_attention.py compares the two).
FUSED = True

_STATE: contextvars.ContextVar["_CaptureState | None"] = contextvars.ContextVar(
    "vlmdiag_r2v_capture_state", default=None)


@dataclass
class _CaptureState:
    layer_of: dict[int, int]            # id(attention module) -> decoder layer index
    delegate: str                       # the model's own implementation for the output
    query_index: torch.Tensor           # [B, R_max] long, query positions (padded with 0)
    query_valid: torch.Tensor           # [B, R_max] float32
    visual: torch.Tensor                # [B, S] bool, visual keys
    row_block: int
    sink_ratio: float | None
    sinks: dict[int, torch.Tensor] = field(default_factory=dict)   # layer -> [B, S] bool visual sinks
    mass: dict[int, torch.Tensor] = field(default_factory=dict)    # layer -> [B, H, C] summed over rows

    def indicators(self, layer: int, k_len: int) -> torch.Tensor:
        """float32 [B, K, C]: channel 0 the visual keys, channel 1 (with sinks) those not sinks."""
        visual = self.visual[:, :k_len]
        channels = [visual]
        if self.sink_ratio is not None:
            sinks = self.sinks.get(layer)
            channels.append(visual if sinks is None else visual & ~sinks[:, :k_len])
        return torch.stack(channels, dim=-1).to(torch.float32)


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


def _fused_forward(module, query, key, value, attention_mask, ind: torch.Tensor, **kwargs):
    """SDPA with indicator value channels: ``(output [B, Q, H, D], per-row mass [B, Q, H, C])``."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    b, hkv, k_len, d = value.shape
    c = ind.shape[-1]
    scaling = kwargs.pop("scaling", None)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    pad_q = query.new_zeros(*query.shape[:-1], PAD_CHANNELS)
    pad_k = key.new_zeros(*key.shape[:-1], PAD_CHANNELS)
    pad_v = value.new_zeros(b, hkv, k_len, PAD_CHANNELS)
    pad_v[..., :c] = ind[:, None].to(value.dtype)
    out, _ = ALL_ATTENTION_FUNCTIONS["sdpa"](
        module, torch.cat([query, pad_q], -1), torch.cat([key, pad_k], -1), torch.cat([value, pad_v], -1),
        attention_mask, scaling=scaling, **kwargs)
    return out[..., :d].contiguous(), out[..., d:d + c]


def _recomputed_rows(state: _CaptureState, query, key, attention_mask, ind, **kwargs) -> torch.Tensor:
    """[B, H, C]: the selected rows' mass, softmax recomputed in fp32 in blocks of rows."""
    b, hq, q_len, d = query.shape
    k_len = key.shape[2]
    scaling = kwargs.get("scaling")
    scaling = d ** -0.5 if scaling is None else scaling
    softcap = kwargs.get("softcap")
    keys = _repeat_kv(key, hq // key.shape[1])
    total = torch.zeros(b, hq, ind.shape[-1], dtype=torch.float32, device=query.device)
    for start in range(0, state.query_index.shape[1], state.row_block):
        idx = state.query_index[:, start:start + state.row_block]              # [B,r]
        valid = state.query_valid[:, start:start + state.row_block]
        q_rows = query.gather(2, idx[:, None, :, None].expand(b, hq, -1, d))
        scores = torch.matmul(q_rows, keys.transpose(2, 3)) * scaling          # [B,H,r,K]
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        if attention_mask is None:      # SDPA's causal skip: no padding, plain causal
            causal = (torch.arange(k_len, device=query.device)[None, None, :]
                      > (idx + (k_len - q_len))[:, :, None])                      # [B,r,K]
            scores = scores.masked_fill(causal[:, None], torch.finfo(scores.dtype).min)
        else:
            mask = attention_mask[:, :, :, :k_len]
            mask_rows = mask.gather(2, idx[:, None, :, None].expand(b, mask.shape[1], -1, k_len))
            if mask_rows.dtype == torch.bool:
                scores = scores.masked_fill(~mask_rows, torch.finfo(scores.dtype).min)
            else:
                scores = scores + mask_rows
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
        on = torch.matmul(probs, ind[:, None])                                  # [B,H,r,C]
        del probs, scores
        total += (on * valid[:, None, :, None]).sum(2)
    return total


def _capture_attention_forward(module, query, key, value, attention_mask, **kwargs):
    """The registered attention function: normal output + accumulated reasoning→visual mass.

    Shapes: query [B, Hq, Q, D]; key/value [B, Hkv, K, D]; attention_mask [B, 1, Q, K] or None.
    """
    state = _STATE.get()
    delegate = state.delegate if state is not None else "sdpa"
    if state is None or id(module) not in state.layer_of or query.shape[2] != state.visual.shape[1]:
        return _delegate_forward(delegate, module, query, key, value, attention_mask, **kwargs)
    layer = state.layer_of[id(module)]
    b, hq, q_len, d = query.shape
    k_len = key.shape[2]
    ind = state.indicators(layer, k_len)                                           # [B,K,C]
    rows = state.query_index                                                       # [B,R]
    if FUSED and delegate != "eager" and query.dtype == torch.float32 and kwargs.get("softcap") is None:
        with torch.no_grad():
            out, per_row = _fused_forward(module, query, key, value, attention_mask, ind, **kwargs)
            picked = per_row.gather(1, rows[:, :, None, None].expand(b, rows.shape[1], hq, ind.shape[-1]))
            total = (picked.to(torch.float32) * state.query_valid[:, :, None, None]).sum(1)   # [B,H,C]
        weights = None
    else:
        out, weights = _delegate_forward(delegate, module, query, key, value, attention_mask, **kwargs)
        with torch.no_grad():
            if weights is not None:                                                # eager: exact rows
                picked = weights.gather(2, rows[:, None, :, None].expand(b, hq, -1, k_len)).to(torch.float32)
                on = torch.matmul(picked, ind[:, None])                                # [B,H,R,C]
                total = (on * state.query_valid[:, None, :, None]).sum(2)
            else:
                total = _recomputed_rows(state, query, key, attention_mask, ind, **kwargs)
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


def sink_tokens(hidden: torch.Tensor, visual: torch.Tensor, ratio: float) -> torch.Tensor:
    """Visual sink tokens of one layer's input (Kang et al. 2025, Eq. 3): bool [B, S], True where
    ``visual`` and max_d |h_d| / RMS(h) ≥ ``ratio``. ``hidden``: [B, S, D] residual stream."""
    h = hidden.detach().to(torch.float32)
    rms = h.pow(2).mean(-1).sqrt().clamp_min(torch.finfo(torch.float32).tiny)
    return visual & (h.abs().amax(-1) / rms >= ratio)


def _sink_hook(state: _CaptureState, layer: int):
    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs.get("hidden_states")
        if hidden is not None and hidden.shape[1] == state.visual.shape[1]:
            state.sinks[layer] = sink_tokens(hidden, state.visual, state.sink_ratio)
    return hook


@contextlib.contextmanager
def capture_attention(loaded: LoadedModel, query_mask: torch.Tensor, key_mask: torch.Tensor, *,
                      row_block: int = 256, sink_ratio: float | None = None,
                      sinks_out: dict | None = None) -> Iterator[dict[int, torch.Tensor]]:
    """Within the block, forward passes of ``loaded.model`` accumulate reasoning→visual mass.

    Only the LLM decoder layers switch to the capturing attention; the vision tower keeps its own.
    Run exactly one forward pass over the full sequence inside the block.

    Args:
        loaded: the model.
        query_mask: bool [B, S], True at reasoning-token (query) positions.
        key_mask: bool [B, S], True at visual-token (key) positions.
        row_block: query rows recomputed at once on the recompute path (bounds the extra memory).
        sink_ratio: τ of :func:`sink_tokens`; when set, channel 1 of each value is the mass on
            the visual keys that are not sinks at that layer.
        sinks_out: when given, filled with layer → bool [B, S] visual sinks (with ``sink_ratio``).

    Yields:
        A dict filled after the forward pass: layer index → float32 tensor [B, heads] (no
        ``sink_ratio``) or [B, heads, 2] (mass on all visual keys, on the non-sink ones), the
        attention mass summed over the query rows.
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
                          query_index=index, query_valid=valid, visual=key_mask.bool(), row_block=row_block,
                          sink_ratio=sink_ratio)
    token = _STATE.set(state)
    handles = []
    raw: dict[int, torch.Tensor] = {}
    try:
        if sink_ratio is not None:
            handles = [layer.register_forward_pre_hook(_sink_hook(state, i), with_kwargs=True)
                       for i, layer in enumerate(layers)]
        for cfg in configs.values():
            cfg._attn_implementation_internal = _implementation_name(delegate)
        yield raw
    finally:
        for handle in handles:
            handle.remove()
        for key, cfg in configs.items():
            cfg._attn_implementation_internal = originals[key]
        _STATE.reset(token)
    for layer, total in state.mass.items():
        raw[layer] = total if sink_ratio is not None else total[..., 0]
    if sinks_out is not None:
        sinks_out.update(state.sinks)
