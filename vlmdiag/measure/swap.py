"""Visual-token swapping: where vision functions act (paper §3.1.1, Eq. 2, App. D.2).

For a (target, source) image pair with the same prompt, the target is generated with the
source image's keys/values at the visual-token positions, in the LLM layers ≥ L (``mode="from"``,
the authors' code) or at layer L alone (``mode="only"``, the paper's text). Text tokens after the
image therefore read the source's visual K/V in those layers.

Differences from the reference ``vision_token_swapper.py`` (``notes/reference-implementation.md``
§3–4), on purpose:

* swapping happens **during the target prefill only** (the reference also swaps at every decoding
  step, duplicating the visual span in the cache and inflating change rates);
* pairs whose visual-token spans (or any other integer input: ids, grids, token types) differ are
  **refused** instead of interpolated;
* the source prefill runs **once per pair**, not once per layer: its post-RoPE K/V are recorded by
  :class:`RecordingCache` while the source answer is generated, and the target runs for every L
  in batches of rows, each row of a batch swapping its own set of layers
  (:class:`VisualSwapCache`);
* no attention class is patched: the swap is a ``DynamicCache`` subclass passed to ``generate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import torch
from transformers import DynamicCache

from vlmdiag.errors import ProbeError
from vlmdiag.measure.grading import BoxFrame, swap_changed
from vlmdiag.probes.types import SwapPair
from vlmdiag.runtime.generate import build_inputs, greedy_generate_inputs, image_prompt, split_generation
from vlmdiag.runtime.model import LoadedModel, decoder_layers

SwapMode = Literal["from", "only"]


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


def check_same_span(target_inputs: dict, source_inputs: dict, image_token_id: int, *,
                    pair_id: str = "pair") -> torch.Tensor:
    """The shared visual-token positions of a target/source pair (B = 1 each).

    Returns:
        long tensor [n_visual].

    Raises:
        ProbeError: the visual spans differ, or any integer input differs (ids, image grid,
            token types, image sizes); the pair is refused, never interpolated.
    """
    problems = []
    for key in sorted(set(target_inputs) | set(source_inputs)):
        t, s = target_inputs.get(key), source_inputs.get(key)
        if not isinstance(t, torch.Tensor) or not isinstance(s, torch.Tensor) or t.is_floating_point():
            continue
        if t.shape != s.shape or not torch.equal(t, s):
            problems.append(f"{key} {tuple(t.shape)} vs {tuple(s.shape)}")
    t_pos = (target_inputs["input_ids"][0] == image_token_id).nonzero().flatten()
    s_pos = (source_inputs["input_ids"][0] == image_token_id).nonzero().flatten()
    if len(t_pos) != len(s_pos) or not torch.equal(t_pos, s_pos):
        problems.insert(0, f"visual tokens: target {len(t_pos)}, source {len(s_pos)}")
    if problems:
        raise ProbeError(f"{pair_id}: target and source differ in {'; '.join(problems)}; visual-token "
                         "swapping needs identical spans (give both images the same pixel size)")
    if len(t_pos) == 0:
        raise ProbeError(f"{pair_id}: the prompt has no image placeholder token (id {image_token_id})")
    return t_pos


def repeat_rows(inputs: dict, n: int) -> dict:
    """``n`` copies of a B = 1 input batch. Tensors are concatenated along dim 0, which is the
    batch dim for per-row tensors and the patch/image dim for flattened ones (Qwen
    ``pixel_values`` [patches, dim], ``image_grid_thw`` [images, 3]), so it works for every family."""
    return {k: torch.cat([v] * n, dim=0) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


@dataclass(frozen=True)
class SwapRun:
    """Answers of one pair: the target alone, the source alone, and the target with the source's
    visual K/V swapped in at each requested layer setting.

    Attributes:
        target_answer: f(i, p), the unswapped target answer.
        source_answer: f(i', p), the source image's own answer.
        layers: int array [n_layers_tested], the layer L of each swapped run.
        swapped: the swapped answers, aligned with ``layers``.
        mode: ``"from"`` (layers ≥ L) or ``"only"`` (layer L alone).
        target_ids, source_ids: int64 arrays [T] of the generated ids behind the two answers.
        swapped_ids: int64 arrays [T], aligned with ``layers``.
    """

    target_answer: str
    source_answer: str
    layers: np.ndarray
    swapped: tuple[str, ...]
    mode: str
    target_ids: np.ndarray = field(default=None, repr=False)
    source_ids: np.ndarray = field(default=None, repr=False)
    swapped_ids: tuple[np.ndarray, ...] = field(default=(), repr=False)


def swap_sweep_inputs(loaded: LoadedModel, target_inputs: dict, source_inputs: dict, *,
                      layers: Sequence[int] | None = None, mode: SwapMode = "from",
                      max_new_tokens: int = 64, layer_batch: int = 8, pair_id: str = "pair") -> SwapRun:
    """Swap sweep on already built inputs (B = 1 each, same prompt, same image size).

    Cost: one target generation, one source generation whose prefill is recorded (the only source
    prefill), and ``ceil(len(layers) / layer_batch)`` batched target generations.

    Args:
        loaded: the model.
        target_inputs: inputs of f(i, p).
        source_inputs: inputs of f(i', p).
        layers: the layers L to test (0-based LLM decoder index); default all.
        mode: ``"from"``: swap at every layer ≥ L; ``"only"``: swap at L alone. A layer index
            equal to the number of layers is allowed in ``"from"`` mode and swaps nothing.
        max_new_tokens: generation budget (the reference code uses 64, the paper 128).
        layer_batch: swapped runs per batched ``generate``.
        pair_id: named in errors.

    Returns:
        :class:`SwapRun`.

    Raises:
        ProbeError: the pair's spans differ (:func:`check_same_span`).
        ValueError: bad ``mode``, ``layers`` or ``layer_batch``.
    """
    n_layers = len(decoder_layers(loaded))
    layers = list(range(n_layers)) if layers is None else [int(x) for x in layers]
    if mode not in ("from", "only"):
        raise ValueError(f"swap: mode={mode!r}; use 'from' (layers >= L) or 'only' (layer L)")
    limit = n_layers if mode == "from" else n_layers - 1
    bad = [x for x in layers if not 0 <= x <= limit]
    if bad:
        raise ValueError(f"swap: layers {bad} outside 0..{limit} for a {n_layers}-layer decoder")
    if layer_batch < 1:
        raise ValueError(f"swap: layer_batch={layer_batch} must be at least 1")
    positions = check_same_span(target_inputs, source_inputs, loaded.image_token_id, pair_id=pair_id)

    model_config = loaded.model.config
    target_seq = greedy_generate_inputs(loaded, target_inputs, max_new_tokens=max_new_tokens)
    target_gen = split_generation(loaded, target_inputs, target_seq)[0]
    recorder = RecordingCache(config=model_config)
    source_seq = greedy_generate_inputs(loaded, source_inputs, max_new_tokens=max_new_tokens,
                                        past_key_values=recorder)
    source_gen = split_generation(loaded, source_inputs, source_seq)[0]
    source = recorder.recorded
    if sorted(source) != list(range(n_layers)):
        raise RuntimeError(f"swap: recorded K/V for layers {sorted(source)}, expected 0..{n_layers - 1}")

    swapped, swapped_ids = [], []
    for start in range(0, len(layers), layer_batch):
        chunk = layers[start:start + layer_batch]
        row_layers = [frozenset(range(L, n_layers)) if mode == "from" else frozenset([L]) for L in chunk]
        batch = repeat_rows(target_inputs, len(chunk))
        cache = VisualSwapCache(source, positions, row_layers, config=model_config)
        seq = greedy_generate_inputs(loaded, batch, max_new_tokens=max_new_tokens, past_key_values=cache)
        for gen in split_generation(loaded, batch, seq):
            swapped.append(gen.text)
            swapped_ids.append(gen.token_ids)
    return SwapRun(target_answer=target_gen.text, source_answer=source_gen.text,
                   layers=np.asarray(layers, dtype=np.int64), swapped=tuple(swapped), mode=mode,
                   target_ids=target_gen.token_ids, source_ids=source_gen.token_ids,
                   swapped_ids=tuple(swapped_ids))


@dataclass(frozen=True)
class PairSwapResult:
    """One pair's sweep plus the task-specific change verdicts (paper App. D.2.2).

    Attributes:
        pair_id: the pair's id.
        task: ``ocr`` / ``counting`` / ``grounding`` / ``recognition``.
        run: the answers (:class:`SwapRun`).
        changed: bool array [n_layers_tested], aligned with ``run.layers``.
    """

    pair_id: str
    task: str
    run: SwapRun
    changed: np.ndarray


def box_frame(loaded: LoadedModel, inputs: dict, image_size: tuple[int, int]) -> BoxFrame:
    """The frame the model's predicted boxes are in, for an image of ``image_size`` (width,
    height) built into ``inputs``: the family's ``box_coordinates`` (``families.yaml``) and, for
    ``resized_pixels``, the size the processor resized the image to (its patch grid
    ``image_grid_thw`` × the vision ``patch_size``).

    Raises:
        ProbeError: ``resized_pixels`` but the inputs have no ``image_grid_thw`` or the config no
            vision ``patch_size``.
    """
    convention = loaded.adapter.box_coordinates
    resized = None
    if convention == "resized_pixels":
        grid = inputs.get("image_grid_thw")
        patch = (loaded.config.get("vision_config") or {}).get("patch_size")
        if grid is None or patch is None:
            raise ProbeError(f"{loaded.adapter.family}: boxes are in pixels of the resized image, but the "
                             "inputs have no image_grid_thw or the config no vision_config.patch_size")
        _, rows, cols = (int(v) for v in grid[0])
        resized = (cols * int(patch), rows * int(patch))
    return BoxFrame(convention, (int(image_size[0]), int(image_size[1])), resized)


def swap_pairs(loaded: LoadedModel, pairs: Sequence[SwapPair], *, layers: Sequence[int] | None = None,
               mode: SwapMode = "from", max_new_tokens: int = 64, layer_batch: int = 8) -> list[PairSwapResult]:
    """Visual-token swap sweep over probe pairs (paper Eq. 2).

    The change rate at layer ``layers[j]`` is ``mean(r.changed[j] for r in results)``
    (:func:`change_rates`). Grounding boxes are converted from the family's coordinates to the
    pair's pixels (:func:`box_frame`) before the IoU.

    Raises:
        ProbeError: a pair's target and source have different visual-token spans.
    """
    results = []
    for pair in pairs:
        target = build_inputs(loaded, [image_prompt(pair.prompt, pair.target_image)])
        source = build_inputs(loaded, [image_prompt(pair.prompt, pair.source_image)])
        run = swap_sweep_inputs(loaded, target, source, layers=layers, mode=mode,
                                max_new_tokens=max_new_tokens, layer_batch=layer_batch, pair_id=pair.id)
        frame = box_frame(loaded, target, pair.target_image.size) if pair.task == "grounding" else None
        changed = np.array([swap_changed(pair, run.target_answer, answer, frame=frame) for answer in run.swapped],
                           dtype=bool)
        results.append(PairSwapResult(pair_id=pair.id, task=pair.task, run=run, changed=changed))
    return results


def change_rates(results: Sequence[PairSwapResult]) -> np.ndarray:
    """Change Rate(ℓ) = (1/N) Σ_n changed[n, ℓ] (Eq. 2): float64 [n_layers_tested]; N = all pairs."""
    if not results:
        return np.zeros(0)
    return np.stack([r.changed for r in results]).mean(axis=0)
