"""The K/V caches of the visual-token swap (:mod:`vlmdiag.measure.swap`): ``DynamicCache``
subclasses passed to ``generate``, so no attention class is patched. Each touches only the
prefill (a layer's first update); decoding steps are never changed."""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import DynamicCache


class RecordingCache(DynamicCache):
    """A ``DynamicCache`` that also keeps the K/V of each layer's first update (the prefill),
    exactly as they reach attention (post-RoPE, before any sliding-window truncation).

    ``recorded[layer] = (keys, values)``, each [B, kv_heads, S, head_dim].
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.recorded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if layer_idx not in self.recorded:
            self.recorded[layer_idx] = (key_states.detach().clone(), value_states.detach().clone())
        return super().update(key_states, value_states, layer_idx, *args, **kwargs)


class VisualSwapCache(DynamicCache):
    """A ``DynamicCache`` that, on each layer's first update (the prefill), replaces the K/V at the
    visual positions with the source's, for the batch rows whose layer set contains that layer.
    Decoding steps are never touched; the swapped K/V stay in the cache for them.

    Args:
        source: ``{layer: (keys, values)}`` of the source prefill, each [1, kv_heads, S, head_dim]
            (from :class:`RecordingCache`).
        positions: long tensor [n_visual], the visual-token positions (equal in target and source).
        row_layers: for each batch row, the set of layer indices swapped in that row.
        **kwargs: passed to ``DynamicCache`` (``config=model.config``).
    """

    def __init__(self, source: dict[int, tuple[torch.Tensor, torch.Tensor]], positions: torch.Tensor,
                 row_layers: Sequence[frozenset[int]], **kwargs):
        super().__init__(**kwargs)
        self.source = source
        self.positions = positions
        self.row_layers = [frozenset(r) for r in row_layers]
        self._seen: set[int] = set()

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if layer_idx not in self._seen:
            self._seen.add(layer_idx)
            rows = [b for b, layers in enumerate(self.row_layers) if layer_idx in layers]
            if rows:
                if key_states.shape[0] != len(self.row_layers):
                    raise RuntimeError(f"VisualSwapCache: batch of {key_states.shape[0]} rows but "
                                       f"{len(self.row_layers)} row layer sets")
                src_k, src_v = self.source[layer_idx]
                key_states, value_states = key_states.clone(), value_states.clone()
                pos = self.positions
                for b in rows:
                    key_states[b, :, pos] = src_k[0, :, pos].to(key_states.dtype)
                    value_states[b, :, pos] = src_v[0, :, pos].to(value_states.dtype)
        return super().update(key_states, value_states, layer_idx, *args, **kwargs)


class RowSwapCache(DynamicCache):
    """A ``DynamicCache`` whose prefill puts, in each batch row, that row's own source K/V at its
    visual positions, in that row's set of layers (rows of different pairs and layers share one
    batch). Decoding steps are never touched.

    Args:
        swaps: per batch row ``(layers, source, positions)``: the layer indices swapped in that
            row, ``{layer: (keys, values)}`` of its source's visual tokens, each
            [kv_heads, n_visual, head_dim] (None when ``layers`` is empty), and the row's visual
            positions, long [n_visual] (in the row's padded frame; the j-th visual key of the source
            goes to the j-th visual position).
        **kwargs: passed to ``DynamicCache`` (``config=model.config``).
    """

    def __init__(self, swaps: Sequence[tuple[frozenset[int], dict | None, torch.Tensor | None]], **kwargs):
        super().__init__(**kwargs)
        self.swaps = list(swaps)
        self._seen: set[int] = set()

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if layer_idx not in self._seen:
            self._seen.add(layer_idx)
            rows = [b for b, (layers, _, _) in enumerate(self.swaps) if layer_idx in layers]
            if rows:
                if key_states.shape[0] != len(self.swaps):
                    raise RuntimeError(f"RowSwapCache: batch of {key_states.shape[0]} rows but {len(self.swaps)} swaps")
                key_states, value_states = key_states.clone(), value_states.clone()
                for b in rows:
                    _, source, pos = self.swaps[b]
                    src_k, src_v = source[layer_idx]
                    key_states[b, :, pos] = src_k.to(key_states.device, key_states.dtype)
                    value_states[b, :, pos] = src_v.to(value_states.device, value_states.dtype)
        return super().update(key_states, value_states, layer_idx, *args, **kwargs)
