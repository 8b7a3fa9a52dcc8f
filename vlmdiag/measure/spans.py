"""Visual-token and reasoning-token spans of a prompt + response, for every family in
``families.yaml`` (SPEC §2; paper Eq. 1: R = reasoning-token queries, V = visual-token keys).

Visual tokens are the image placeholder positions after the processor expanded the placeholder
once per visual token (``<|image_pad|>`` for Qwen2-VL/2.5-VL/3-VL, ``<image>`` for LLaVA,
LLaVA-OneVision, Idefics3 and SmolVLM, ``<image_soft_token>`` for Gemma 3, ``<IMG_CONTEXT>`` for
InternVL): exactly where the model writes its projected image features. The markers around an
image (``<|vision_start|>``/``<|vision_end|>``, ``<start_of_image>``/``<end_of_image>``,
``<img>``/``</img>``, Idefics3's ``<fake_token_around_image>``) and Idefics3's row/column text
tokens are text tokens, not visual ones.

Reasoning tokens are the response tokens inside ``<think>…</think>`` (an unclosed block runs to
the end); when the chat template opened the block in the prompt (Qwen3 thinking, DeepSeek-R1
style templates end the generation prompt with ``<think>``), from the first response token to
``</think>``; without any ``<think>``, the whole response.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vlmdiag.adapters import Adapter


@dataclass(frozen=True)
class VisualSpans:
    """The visual tokens of one sequence.

    Attributes:
        visual: bool [S], True at image placeholder positions (the keys V of Eq. 1).
        markers: bool [S], True at vision start/end markers (text tokens).
        images: ``(start, end)`` (end exclusive) of each contiguous run of visual tokens, in order
            (one per image or image tile; Idefics3 splits an image into tiles).
    """

    visual: np.ndarray
    markers: np.ndarray
    images: tuple[tuple[int, int], ...]

    @property
    def n_visual(self) -> int:
        return int(self.visual.sum())


def visual_spans(input_ids: Sequence[int], adapter: Adapter, config: dict, tokenizer=None) -> VisualSpans:
    """The visual-token spans of ``input_ids`` (one sequence, [S]) for ``adapter``'s family.

    Args:
        input_ids: token ids of one sequence (a list, array or 1-D tensor).
        adapter: the family (:func:`vlmdiag.adapters.adapter_for`).
        config: the checkpoint's ``config.json`` as a dict (``model.config.to_dict()``).
        tokenizer: used for marker ids the config does not hold (InternVL, Idefics3).

    Raises:
        CheckpointError: the config has none of the family's image-token keys.
    """
    ids = np.asarray(input_ids.tolist() if hasattr(input_ids, "tolist") else list(input_ids), dtype=np.int64).reshape(-1)
    visual = ids == adapter.image_token_id(config)
    markers = np.isin(ids, list(adapter.marker_ids(config, tokenizer))) & ~visual
    edges = np.flatnonzero(np.diff(np.concatenate([[0], visual.astype(np.int8), [0]])))
    return VisualSpans(visual, markers, tuple((int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])))


def think_opened(prompt_text: str) -> bool:
    """Whether the chat template opened a ``<think>`` block the response continues (the prompt
    ends with ``<think>``, after white space)."""
    text = prompt_text.rstrip()
    return text.endswith("<think>") and text.rfind("</think>") < text.rfind("<think>")


def reasoning_mask(tokenizer, response_ids: Sequence[int], *, opened: bool = False) -> np.ndarray:
    """Which response tokens are reasoning tokens (module docstring).

    Args:
        tokenizer: the checkpoint's tokenizer.
        response_ids: the generated ids, [T].
        opened: the prompt opened the ``<think>`` block (:func:`think_opened`).

    Returns:
        bool [T].
    """
    from vlmdiag.measure.attention import reasoning_token_mask

    ids = [int(i) for i in (response_ids.tolist() if hasattr(response_ids, "tolist") else response_ids)]
    if not opened:
        return reasoning_token_mask(tokenizer, ids)
    prefix = tokenizer.encode("<think>", add_special_tokens=False)
    return reasoning_token_mask(tokenizer, list(prefix) + ids)[len(prefix):]
