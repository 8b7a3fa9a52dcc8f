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
from typing import Iterator, Sequence

import numpy as np

from vlmdiag.measure.grading import grade
from vlmdiag.probes.types import AbilityItem
from vlmdiag.runtime.generate import Prompt, generate, image_prompt, text_prompt
from vlmdiag.runtime.model import LoadedModel, decoder_layers

#: The prefix the reference ``localization_reasoning.py`` puts before each math question.
MATH_PROMPT_PREFIX = 'Please solve the problem step by step and put your answer in one "\\boxed{}".\n\n'


def _identity_hook(module, args, kwargs, output):
    return args[0] if args else kwargs["hidden_states"]


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
               max_new_tokens: int = 512, batch_size: int = 8, prefix: str = MATH_PROMPT_PREFIX,
               include_baseline: bool = True, answer_format: str = "none") -> SkipResult:
    """Skip each layer in turn and grade the answers to math items (rule-based,
    :func:`~vlmdiag.measure.grading.grade`; a response cut off by the budget before its answer
    is wrong and marked in ``SkipResult.truncated``).

    Args:
        loaded: the model.
        items: math items (``text_math`` for the paper's GSM8K/MATH500 setting).
        layers: layers to skip one at a time (default all).
        max_new_tokens: response budget (paper Table 5: 128; reference code: 2048).
        batch_size: prompts per generation batch.
        prefix: text put before each question.
        include_baseline: add the unskipped model as setting ``-1`` first.
        answer_format: answer instruction after each question (default none).

    Returns:
        :class:`SkipResult`; ``error_rate`` gives the per-layer curve.
    """
    n_layers = len(decoder_layers(loaded))
    layers = list(range(n_layers)) if layers is None else [int(k) for k in layers]
    settings = ([-1] if include_baseline else []) + layers
    prompts = [math_prompt(item, prefix=prefix, answer_format=answer_format) for item in items]
    answers, correct, truncated = [], [], []
    for k in settings:
        with skip_layers(loaded, [] if k < 0 else [k]):
            gens = generate(loaded, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
        answers.append(tuple(g.text for g in gens))
        graded = [grade(g.text, item.answer, choices=item.choices, hit_budget=g.hit_budget)
                  for g, item in zip(gens, items)]
        correct.append([x.correct for x in graded])
        truncated.append([x.truncated for x in graded])
    shape = (len(settings), len(items))
    return SkipResult(layers=np.asarray(settings, dtype=np.int64),
                      correct=np.asarray(correct, dtype=bool).reshape(shape),
                      answers=tuple(answers), item_ids=tuple(item.id for item in items),
                      truncated=np.asarray(truncated, dtype=bool).reshape(shape))
