"""The two kinds of probe item every probe source (the model organism, the paper's pairs,
MathVista / MATH-500 copies) produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

SwapTask = Literal["ocr", "counting", "grounding", "recognition"]
AbilityKind = Literal["vqa", "math_vqa", "text_math"]


@dataclass(frozen=True)
class SwapPair:
    """A target/source image pair for visual-token swapping (paper §3.1.1, Eq. 2).

    Both images have the same pixel size, so their visual-token spans match. ``prompt`` is the
    user text without any image placeholder. Answers/boxes are those of each image; which ones
    are set depends on ``task`` (``grounding`` uses the boxes, x1,y1,x2,y2 in pixels).
    """

    id: str
    task: SwapTask
    target_image: Image.Image
    source_image: Image.Image
    prompt: str
    target_answer: str | None = None
    source_answer: str | None = None
    target_bbox: tuple[float, float, float, float] | None = None
    source_bbox: tuple[float, float, float, float] | None = None
    meta: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class AbilityItem:
    """An item for the fine-grained abilities (paper Eqs. 4–6).

    ``kind``: ``vqa`` (Mvis: image vs black image), ``math_vqa`` (Mv2r: image vs black image +
    ``description``), ``text_math`` (Mrea and layer skipping: ``image`` is None). ``answer`` is
    the ground truth as a string.
    """

    id: str
    kind: AbilityKind
    question: str
    answer: str
    image: Image.Image | None = None
    description: str | None = None
    choices: tuple[str, ...] | None = None
    meta: dict = field(default_factory=dict, compare=False)
