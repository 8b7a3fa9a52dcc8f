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
import contextlib
from typing import Callable, Literal, Sequence

import numpy as np
import torch

from vlmdiag.errors import ProbeError
from vlmdiag.measure.grading import BoxFrame, swap_changed
from vlmdiag.measure.swap_caches import RecordingCache, RowSwapCache, VisualSwapCache  # noqa: F401
from vlmdiag.probes.types import SwapPair
from vlmdiag.runtime.generate import (DEFAULT_BATCH_SIZE, generate, greedy_generate_inputs, image_prompt,
                                      split_generation)
from vlmdiag.runtime.model import LoadedModel, decoder_layers

SwapMode = Literal["from", "only"]


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


def _check_layers(n_layers: int, layers: Sequence[int] | None, mode: str) -> list[int]:
    """The layer settings to test (default all), checked against the decoder depth and ``mode``."""
    layers = list(range(n_layers)) if layers is None else [int(x) for x in layers]
    if mode not in ("from", "only"):
        raise ValueError(f"swap: mode={mode!r}; use 'from' (layers >= L) or 'only' (layer L)")
    limit = n_layers if mode == "from" else n_layers - 1
    bad = [x for x in layers if not 0 <= x <= limit]
    if bad:
        raise ValueError(f"swap: layers {bad} outside 0..{limit} for a {n_layers}-layer decoder")
    return layers


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
    layers = _check_layers(n_layers, layers, mode)
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


def _row_signature(inputs: dict, row: int, image_token_id: int) -> dict[str, torch.Tensor]:
    """The integer inputs of one batch row without its padding (ids, token types, image grid...)."""
    keep = inputs["attention_mask"][row].bool()
    batch = inputs["input_ids"].shape[0]
    out = {}
    for key, value in inputs.items():
        if not isinstance(value, torch.Tensor) or value.is_floating_point() or key == "attention_mask":
            continue
        if value.ndim == 2 and value.shape == inputs["input_ids"].shape:
            out[key] = value[row][keep]
        elif value.shape[0] == batch:
            out[key] = value[row]
        else:
            out[key] = value
    out["_visual"] = (out["input_ids"] == image_token_id).nonzero().flatten()
    return out


class _RecordSources:
    """``per_batch`` of the source generations: record the prefill K/V, keep each row's visual
    K/V and integer inputs (by source index), drop the rest when the batch ends."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.visual: dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
        self.signature: dict[int, dict[str, torch.Tensor]] = {}

    def __call__(self, chunk: list[int], inputs: dict):
        cache = RecordingCache(config=self.loaded.model.config)

        @contextlib.contextmanager
        def keep_visual():
            yield
            ids = inputs["input_ids"]
            for b, index in enumerate(chunk):
                pos = (ids[b] == self.loaded.image_token_id).nonzero().flatten()
                self.visual[index] = {layer: (k[b, :, pos].clone(), v[b, :, pos].clone())
                                      for layer, (k, v) in cache.recorded.items()}
                self.signature[index] = _row_signature(inputs, b, self.loaded.image_token_id)

        return keep_visual(), {"past_key_values": cache}


def _refuse(pair_id: str, problems: list[str]) -> ProbeError:
    return ProbeError(f"{pair_id}: target and source differ in {'; '.join(problems)}; visual-token "
                      "swapping needs identical spans (give both images the same pixel size)")


def swap_pairs(loaded: LoadedModel, pairs: Sequence[SwapPair], *, layers: Sequence[int] | None = None,
               mode: SwapMode = "from", max_new_tokens: int = 64, layer_batch: int | None = None,
               batch_size: int = DEFAULT_BATCH_SIZE,
               progress: Callable[[int, int], None] | None = None,
               answer_format: str = "none") -> list[PairSwapResult]:
    """Visual-token swap sweep over probe pairs (paper Eq. 2), batched across pairs and layers.

    Two batched generations in all: the sources (their prefill K/V recorded, once per pair),
    then every pair's target unswapped and with each layer setting swapped, as rows of the same
    batches (:class:`RowSwapCache`). Answers equal :func:`swap_sweep_inputs` pair by pair (left
    padding; a test checks it). The change rate at layer ``layers[j]`` is
    ``mean(r.changed[j] for r in results)`` (:func:`change_rates`). Grounding boxes are
    converted from the family's coordinates to the pair's pixels (:func:`box_frame`) before the IoU.

    Args:
        layers / mode / max_new_tokens: as in :func:`swap_sweep_inputs`.
        layer_batch: accepted for compatibility; rows per batch are ``batch_size``.
        batch_size: rows (a source, or a target with one layer setting) per ``generate`` call.
        progress: ``progress(done, total)``: rows generated so far (sources, then targets).
        answer_format: the suite's answer instruction after the pair's prompt, on both images
            (:func:`vlmdiag.runtime.generate.image_prompt`, the ability sweeps' layout).

    Raises:
        ProbeError: a pair's target and source have different visual-token spans (image sizes
            or any integer input differ).
        ValueError: bad ``mode``, ``layers`` or ``answer_format``.
    """
    n_layers = len(decoder_layers(loaded))
    layers = _check_layers(n_layers, layers, mode)
    for pair in pairs:
        if pair.target_image.size != pair.source_image.size:
            raise _refuse(pair.id, [f"visual tokens: image sizes {pair.target_image.size} vs {pair.source_image.size}"])
    sources = [image_prompt(pair.prompt, pair.source_image, answer_format) for pair in pairs]
    targets = [image_prompt(pair.prompt, pair.target_image, answer_format) for pair in pairs]
    settings = [frozenset()] + [frozenset(range(L, n_layers)) if mode == "from" else frozenset([L]) for L in layers]
    rows = [(p, setting) for p in range(len(pairs)) for setting in settings]
    total = len(pairs) + len(rows)
    record = _RecordSources(loaded)
    source_gens = generate(loaded, sources, max_new_tokens=max_new_tokens, batch_size=batch_size, per_batch=record,
                           progress=(lambda d, t: progress(d, total)) if progress else None)

    def swap_batch(chunk: list[int], inputs: dict):
        swaps = []
        for b, index in enumerate(chunk):
            p, setting = rows[index]
            signature = _row_signature(inputs, b, loaded.image_token_id)
            expected = record.signature[p]
            problems = [key for key in sorted(set(signature) | set(expected)) if key != "_visual" and (
                key not in signature or key not in expected or signature[key].shape != expected[key].shape
                or not torch.equal(signature[key], expected[key]))]
            if len(signature["_visual"]) != len(expected["_visual"]):
                problems.insert(0, f"visual tokens: target {len(signature['_visual'])}, source {len(expected['_visual'])}")
            if problems:
                raise _refuse(pairs[p].id, problems)
            if len(signature["_visual"]) == 0:
                raise ProbeError(f"{pairs[p].id}: the prompt has no image placeholder token (id {loaded.image_token_id})")
            pos = (inputs["input_ids"][b] == loaded.image_token_id).nonzero().flatten()
            swaps.append((setting, record.visual[p] if setting else None, pos))
        return contextlib.nullcontext(), {"past_key_values": RowSwapCache(swaps, config=loaded.model.config)}

    gens = generate(loaded, [targets[p] for p, _ in rows], max_new_tokens=max_new_tokens, batch_size=batch_size,
                    per_batch=swap_batch,
                    progress=(lambda d, t: progress(len(pairs) + d, total)) if progress else None)
    results = []
    for p, pair in enumerate(pairs):
        own = gens[p * len(settings):(p + 1) * len(settings)]
        run = SwapRun(target_answer=own[0].text, source_answer=source_gens[p].text,
                      layers=np.asarray(layers, dtype=np.int64), swapped=tuple(g.text for g in own[1:]), mode=mode,
                      target_ids=own[0].token_ids, source_ids=source_gens[p].token_ids,
                      swapped_ids=tuple(g.token_ids for g in own[1:]))
        grid = {k: v[None] for k, v in record.signature[p].items() if k == "image_grid_thw"}
        frame = box_frame(loaded, grid, pair.target_image.size) if pair.task == "grounding" else None
        changed = np.array([swap_changed(pair, run.target_answer, answer, frame=frame) for answer in run.swapped],
                           dtype=bool)
        results.append(PairSwapResult(pair_id=pair.id, task=pair.task, run=run, changed=changed))
    return results


def change_rates(results: Sequence[PairSwapResult]) -> np.ndarray:
    """Change Rate(ℓ) = (1/N) Σ_n changed[n, ℓ] (Eq. 2): float64 [n_layers_tested]; N = all pairs."""
    if not results:
        return np.zeros(0)
    return np.stack([r.changed for r in results]).mean(axis=0)
