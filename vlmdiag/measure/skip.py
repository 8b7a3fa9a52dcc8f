"""Layer skipping: where reasoning acts (paper §3.1.2, App. D.3).

Layer k becomes the identity: its attention and MLP outputs are zero and the residual stream
passes through (``h_{k+1} = h_k``), one layer at a time. This is done with a per-instance forward
hook on the decoder layer that returns the layer's input, inside a context manager that removes
it in ``finally``. The layer still runs, so it still writes its (unused) K/V into the cache and
every layer's cache length stays consistent. A test shows the hook gives exactly the scores of
zeroing ``o_proj`` and ``down_proj`` weights.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from vlmdiag.measure.grading import grade
from vlmdiag.probes.types import AbilityItem
from vlmdiag.runtime.generate import DEFAULT_BATCH_SIZE, Prompt, generate, image_prompt, text_prompt
from vlmdiag.runtime.model import LoadedModel, decoder_layers

#: The prefix the reference ``localization_reasoning.py`` puts before each math question.
MATH_PROMPT_PREFIX = 'Please solve the problem step by step and put your answer in one "\\boxed{}".\n\n'


def _identity_hook(module, args, kwargs, output):
    return args[0] if args else kwargs["hidden_states"]


def _rows_identity_hook(rows: torch.Tensor):
    """A forward hook making the layer the identity for the batch ``rows`` only (long [n])."""
    # The index moves to each device once: a CPU index on a CUDA tensor is copied from pageable
    # memory at every use, and such a copy first waits for the GPU's queue (a stall per layer call).
    on_device: dict[torch.device, torch.Tensor] = {}

    def hook(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        out = output[0] if isinstance(output, tuple) else output
        index = on_device.get(out.device)
        if index is None:
            index = on_device[out.device] = rows.to(out.device)
        out = out.clone()
        out[index] = hidden[index].to(out.dtype)
        return (out, *output[1:]) if isinstance(output, tuple) else out
    return hook


@contextlib.contextmanager
def skip_layers_per_row(loaded: LoadedModel, row_layers: Sequence[int | None]) -> Iterator[None]:
    """Within the block, batch row ``b`` runs with decoder layer ``row_layers[b]`` as the
    identity (None: no layer skipped), so every skip setting of a sweep can share one batch.
    Row for row this equals :func:`skip_layers` on that row alone (the hook replaces the layer's
    output by its input in those rows only; K/V are still written, as there).

    Raises:
        ValueError: a layer index is out of range.
    """
    stack = decoder_layers(loaded)
    bad = sorted({k for k in row_layers if k is not None and not 0 <= k < len(stack)})
    if bad:
        raise ValueError(f"skip_layers: layers {bad} outside 0..{len(stack) - 1}")
    handles = []
    try:
        for k in sorted({k for k in row_layers if k is not None}):
            rows = torch.tensor([b for b, x in enumerate(row_layers) if x == k], dtype=torch.long)
            handles.append(stack[k].register_forward_hook(_rows_identity_hook(rows), with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def skip_layers(loaded: LoadedModel, layers: Sequence[int]) -> Iterator[None]:
    """Within the block, the given LLM decoder layers (0-based) are identity maps.

    Raises:
        ValueError: a layer index is out of range.
    """
    stack = decoder_layers(loaded)
    bad = [k for k in layers if not 0 <= k < len(stack)]
    if bad:
        raise ValueError(f"skip_layers: layers {bad} outside 0..{len(stack) - 1}")
    handles = []
    try:
        for k in layers:
            handles.append(stack[k].register_forward_hook(_identity_hook, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class SkipResult:
    """Layer-skip correctness on math items.

    Attributes:
        layers: int array [n_settings]; -1 is the baseline (no layer skipped), k ≥ 0 skips layer k.
        correct: bool array [n_settings, n_items].
        answers: the responses, [n_settings][n_items].
        item_ids: the items' ids, [n_items].
        truncated: bool array [n_settings, n_items]: the response ran out of the token budget
            before stating an answer (counted wrong in ``correct``); None when not recorded.
    """

    layers: np.ndarray
    correct: np.ndarray
    answers: tuple[tuple[str, ...], ...]
    item_ids: tuple[str, ...]
    truncated: np.ndarray | None = None

    @property
    def error_rate(self) -> np.ndarray:
        """float64 [n_settings]: 1 − accuracy per setting (the paper's y-axis); N = all items."""
        return 1.0 - self.correct.mean(axis=1)


def math_prompt(item: AbilityItem, *, prefix: str = MATH_PROMPT_PREFIX, answer_format: str = "none") -> Prompt:
    """The prompt of a math item: text only for ``text_math``, the image otherwise; the answer
    instruction of ``answer_format`` (:data:`vlmdiag.probes.prompts.ANSWER_FORMATS`) after the question."""
    question = prefix + item.question
    if item.image is None:
        return text_prompt(question, answer_format)
    return image_prompt(question, item.image, answer_format)


def skip_sweep(loaded: LoadedModel, items: Sequence[AbilityItem], *, layers: Sequence[int] | None = None,
               max_new_tokens: int = 512, batch_size: int = DEFAULT_BATCH_SIZE, prefix: str = MATH_PROMPT_PREFIX,
               include_baseline: bool = True, answer_format: str = "none",
               progress: Callable[[int, int], None] | None = None) -> SkipResult:
    """Skip each layer in turn and grade the answers to math items (rule-based,
    :func:`~vlmdiag.measure.grading.grade`; a response cut off by the budget before its answer
    is wrong and marked in ``SkipResult.truncated``).

    Every (setting, item) is one row; rows of different settings share batches, each row
    skipping its own layer (:func:`skip_layers_per_row`). Answers equal those of one setting at a
    time (a test checks it).

    Args:
        loaded: the model.
        items: math items (``text_math`` for the paper's GSM8K/MATH500 setting).
        layers: layers to skip one at a time (default all).
        max_new_tokens: response budget (paper Table 5: 128; reference code: 2048).
        batch_size: rows per generation batch.
        prefix: text put before each question.
        include_baseline: add the unskipped model as setting ``-1`` first.
        answer_format: answer instruction after each question (default none).
        progress: ``progress(done, total)`` after each batch: rows answered of settings × items.

    Returns:
        :class:`SkipResult`; ``error_rate`` gives the per-layer curve.

    Raises:
        ValueError: a layer index is out of range.
    """
    n_layers = len(decoder_layers(loaded))
    layers = list(range(n_layers)) if layers is None else [int(k) for k in layers]
    bad = [k for k in layers if not 0 <= k < n_layers]
    if bad:
        raise ValueError(f"skip_layers: layers {bad} outside 0..{n_layers - 1}")
    settings = ([-1] if include_baseline else []) + layers
    prompts = [math_prompt(item, prefix=prefix, answer_format=answer_format) for item in items]
    rows = [(k, i) for k in settings for i in range(len(items))]

    def per_batch(chunk: list[int], inputs: dict):
        return skip_layers_per_row(loaded, [None if rows[r][0] < 0 else rows[r][0] for r in chunk]), {}

    gens = generate(loaded, [prompts[i] for _, i in rows], max_new_tokens=max_new_tokens, batch_size=batch_size,
                    per_batch=per_batch, progress=progress)
    graded = [grade(g.text, items[i].answer, choices=items[i].choices, hit_budget=g.hit_budget)
              for g, (_, i) in zip(gens, rows)]
    shape = (len(settings), len(items))
    return SkipResult(layers=np.asarray(settings, dtype=np.int64),
                      correct=np.asarray([x.correct for x in graded], dtype=bool).reshape(shape),
                      answers=tuple(tuple(g.text for g in gens[s * len(items):(s + 1) * len(items)])
                                    for s in range(len(settings))),
                      item_ids=tuple(item.id for item in items),
                      truncated=np.asarray([x.truncated for x in graded], dtype=bool).reshape(shape))


def split_items(result: SkipResult) -> list[SkipResult]:
    """``result`` item by item: one :class:`SkipResult` of one item (all settings) per item, in order."""
    return [SkipResult(layers=result.layers, correct=result.correct[:, i:i + 1],
                       answers=tuple((answers[i],) for answers in result.answers), item_ids=(result.item_ids[i],),
                       truncated=None if result.truncated is None else result.truncated[:, i:i + 1])
            for i in range(len(result.item_ids))]


def join_items(parts: Sequence[SkipResult]) -> SkipResult:
    """The :class:`SkipResult` of several results' items side by side (the inverse of
    :func:`split_items`): ``correct`` [n_settings, Σ n_items], items in the order of ``parts``.

    Raises:
        ValueError: no parts, or parts with different layer settings.
    """
    if not parts:
        raise ValueError("join_items: no results to join")
    layers = parts[0].layers
    if any(not np.array_equal(part.layers, layers) for part in parts):
        raise ValueError("join_items: the results skip different layer settings")
    truncated = (None if any(part.truncated is None for part in parts)
                 else np.concatenate([part.truncated for part in parts], axis=1))
    return SkipResult(layers=layers, correct=np.concatenate([part.correct for part in parts], axis=1),
                      answers=tuple(tuple(a for part in parts for a in part.answers[s]) for s in range(len(layers))),
                      item_ids=tuple(i for part in parts for i in part.item_ids), truncated=truncated)
