"""Seeded synthetic tasks of the model organism, drawn with PIL, with programmatic ground truth.

Every image is 112x112 px (8x8 patches of 14 px, 4x4 merged visual tokens of 28 px) on a faint
coordinate-gradient background. A one-digit number is written large over the top-left 2x2 cells;
the other 12 cells hold at most one shape per cell: a square, circle or triangle in red, green
or blue, drawn inside the cell with a 4 px margin, so each shape's box is
``(28*col + 4, 28*row + 4, 28*col + 24, 28*row + 24)`` (x1, y1, x2, y2 in pixels, x2/y2 exclusive).
Each 28 px cell is exactly one merged visual token (:func:`token_labels`).

Tasks (question -> short answer):

* ``recognition``: "Is there a triangle?" -> ``yes`` / ``no`` (squares and circles as distractors)
* ``counting``: "How many shapes are there?" -> ``0`` .. ``6``
* ``reading``: "What number is written in the corner?" -> ``0`` .. ``9``
* ``grounding``: "Where is the triangle?" (exactly one, 0-3 other shapes) -> ``[x1,y1,x2,y2]``
* ``arithmetic`` (visual arithmetic, needs perception and reasoning): "Add 2 to the number written
  in the corner." -> corner number + 2 (addend 1..3). Its reasoning trace is
  ``<think>4+2=6</think><answer>6</answer>``.

Each perception question names one fixed target (the triangle, all shapes): a tiny model trained
from scratch on CPU did not learn to condition its answer on a varying question word ("Is there a
{square|circle|triangle}?", "How many {red|green|blue} shapes?") within the build budget, because
no single image feature correlates with the answer until the question word is used (measured; see
``bench/RESULTS.md``), while the fixed-target versions are learned in a few hundred steps.

Every item has an exact text description (for Mv2r), a black-image variant (an all-zero image of
the same size) and, for arithmetic, a text-only counterpart (description + question, for Mrea).

Held-out vs training: a scene/question fingerprint is hashed; items whose hash is 0 mod 10 are
held out (:func:`swap_pairs`, :func:`ability_items`, evaluation) and never used for training
(:func:`training_items`), so the two sets are disjoint by construction.

The pieces live in :mod:`~vlmdiag.organism.scenes` (drawing), :mod:`~vlmdiag.organism.items`
(items and partitions), :mod:`~vlmdiag.organism.answers` (scoring) and
:mod:`~vlmdiag.organism.probe_items` (swap pairs, ability items); this module holds the training
targets and chat examples and re-exports the rest under its old names.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from vlmdiag.organism.answers import (extract_answer, format_bbox, has_reasoning_format, iou,  # noqa: F401
                                      is_correct, parse_bbox)
from vlmdiag.organism.items import (COUNTING_QUESTION, GROUNDING_QUESTION, HELD_OUT_MODULUS,  # noqa: F401
                                    MAX_ADDEND, PERCEPTION_TASKS, READING_QUESTION,
                                    RECOGNITION_QUESTION, TARGET_KIND, TASKS, TaskItem, _bucket,
                                    _make, arithmetic_question, generate, training_items,
                                    vision_scenes)
from vlmdiag.organism.probe_items import (ABILITY_KINDS, SWAP_TASK_OF, VQA_TASKS,  # noqa: F401
                                          ability_items, swap_pairs)
from vlmdiag.organism.scenes import (BACKGROUND, CELL, COLORS, FONT_SIZE, GRID, IMAGE_SIZE,  # noqa: F401
                                     MARGIN, MAX_COUNT, NUMBER_CELLS, SHAPE_CELLS, SHAPES,
                                     TEXT_COLOR, Scene, Shape, black_image, cell_background,
                                     render, token_labels)
from vlmdiag.probes.prompts import described_question, image_message, text_message


def short_target(item: TaskItem) -> str:
    """Base-stage target: the bare answer."""
    return item.answer


def reasoning_target(item: TaskItem, *, distractor: bool = False) -> str:
    """IN-stage target ``<think>…</think><answer>…</answer>``.

    Arithmetic: ``<think>4+2=6</think><answer>6</answer>``. With ``distractor=True`` the trace
    follows the wrong strategy "read the number and stop" (``<think>4</think><answer>4</answer>``,
    the reasoning step skipped): the IN stage is trained on a share of such noisy traces, so that
    RL has a reasoning error to fix.
    """
    if item.task == "arithmetic":
        n, k = item.operands
        if distractor:
            return f"<think>{n}</think><answer>{n}</answer>"
        return f"<think>{n}+{k}={n + k}</think><answer>{n + k}</answer>"
    think = {
        "recognition": f"look for a {item.meta.get('kind', 'shape')}",
        "counting": "count the shapes",
        "reading": "read the corner",
        "grounding": f"find the {item.meta.get('kind', 'shape')}",
    }[item.task]
    return f"<think>{think}</think><answer>{item.answer}</answer>"



# --------------------------------------------------------------------------- chat examples


@dataclass(frozen=True)
class ChatExample:
    """One prompt in a pinned layout (:mod:`vlmdiag.probes.prompts`) and its target completion.

    ``condition``: ``image`` (image_message), ``described`` (black image +
    described_question), ``text`` (text_message with described_question).
    """

    messages: list
    image: Image.Image | None
    target: str
    task: str
    answer: str
    condition: str


def chat_example(item: TaskItem, condition: str, target: str) -> ChatExample:
    """Wrap ``item`` in the message layout of ``condition`` (image | described | text)."""
    if condition == "image":
        return ChatExample(image_message(item.question), item.image(), target, item.task,
                           item.answer, condition)
    if condition == "described":
        return ChatExample(image_message(described_question(item.description(), item.question)),
                           black_image(), target, item.task, item.answer, condition)
    if condition == "text":
        return ChatExample(text_message(described_question(item.description(), item.question)),
                           None, target, item.task, item.answer, condition)
    raise ValueError(f"unknown condition {condition!r}")


def corpus_texts(seed: int = 0, n_per_task: int = 60) -> list[str]:
    """Texts to train the BPE on: questions, descriptions, answers, targets, chat scaffolding."""
    # the chat scaffolding is in every prompt: repeated so BPE gives it few tokens
    texts = ["system\nYou are a helpful assistant.", "user\n", "assistant\n",
             "Image Description: ", "\nQuestion: "] * 20
    for task in TASKS:
        for it in training_items(task, n_per_task, seed=seed):
            texts += [it.question, it.description(), it.answer, reasoning_target(it),
                      described_question(it.description(), it.question)]
            if task == "arithmetic":
                texts.append(reasoning_target(it, distractor=True))
    return texts
