"""The task-specific "changed" criteria of visual-token swapping (paper App. D.2.2), and reading the
counts, boxes and yes/no of a response (after :func:`vlmdiag.measure.grading.final_answer`'s
reasoning removal).

Boxes: models write coordinates in their family's convention (:data:`BOX_COORDINATES`, set per
family in ``vlmdiag/adapters/families.yaml``); :class:`BoxFrame` converts a predicted box to the
probe's pixel coordinates before the IoU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from vlmdiag.adapters import BOX_COORDINATES
from vlmdiag.measure.grading import (_ANSWER_CLOSED, _ANSWER_OPEN, _NUMBER_WORDS, _YES_NO, extract_answer,
                                     last_boxed, strip_think)
from vlmdiag.probes.types import SwapPair


# --- swap criteria (paper App. D.2.2) -------------------------------------------------------------

def parse_count(text: str) -> int | None:
    """The count in an answer: the last integer, or a number word (zero..twenty), else None."""
    text = extract_answer(text)
    numbers = re.findall(r"-?\d+", text)
    if numbers:
        return int(numbers[-1])
    words = [w for w in re.findall(r"[a-z]+", text.lower()) if w in _NUMBER_WORDS]
    return _NUMBER_WORDS[words[-1]] if words else None


# A number standing on its own: not the "2" of a key such as ``bbox_2d`` (Qwen2.5-VL's JSON boxes).
_BOX_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
_C = r"\s*(-?\d+(?:\.\d+)?)\s*"
# Four coordinates written as one group: [x1, y1, x2, y2], (x1,y1),(x2,y2), (x1, y1, x2, y2).
_BOX_GROUP = re.compile(rf"\[{_C},{_C},{_C},{_C}\]|\({_C},{_C}\)\s*,?\s*\({_C},{_C}\)|\({_C},{_C},{_C},{_C}\)")


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """The box ``x1, y1, x2, y2`` (corners sorted) of a response, else None.

    Read in the final answer (reasoning removed; inside ``<answer>`` or ``\\boxed{}`` when there):
    the first four coordinates written as one group — a bracket list (``[x1, y1, x2, y2]``, as in
    Qwen2.5-VL's ``{"bbox_2d": [...]}`` JSON and InternVL's ``[[...]]``), Qwen2-VL's
    ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` or a 4-tuple — else its first 4 numbers standing
    alone (``bbox_2d`` holds none). The coordinates are returned as written: :class:`BoxFrame`
    converts them (0–1000 grid, resized pixels, ...) to the probe's pixels."""
    text = strip_think(text)
    tagged = _ANSWER_CLOSED.findall(text) or [m.group(1) for m in [_ANSWER_OPEN.search(text)] if m]
    region = tagged[-1] if tagged else text
    region = last_boxed(region) or region
    group = _BOX_GROUP.search(region)
    if group:
        numbers = [n for n in group.groups() if n is not None]
    else:
        numbers = _BOX_NUMBER.findall(region)
    if len(numbers) < 4:
        return None
    x1, y1, x2, y2 = (float(n) for n in numbers[:4])
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


# How a model family writes box coordinates (BOX_COORDINATES, declared per family in families.yaml):
# ``pixels``: pixels of the image as given; ``resized_pixels``: pixels of the image as the
# processor resized it (Qwen2.5-VL); ``grid_1000``: 0–1000 over each axis (Qwen2-VL, Qwen3-VL,
# InternVL); ``unit``: 0–1 over each axis.


@dataclass(frozen=True)
class BoxFrame:
    """The frame of a model's predicted boxes for one image, and its conversion to that image's
    pixels (the frame of the probes' ground-truth boxes).

    Attributes:
        coordinates: one of :data:`BOX_COORDINATES`.
        image_size: ``(width, height)`` of the image as given, pixels.
        resized_size: ``(width, height)`` the processor resized it to, pixels; needed for
            ``resized_pixels`` only.

    Raises:
        ValueError: unknown convention, a non-positive size, or ``resized_pixels`` without
            ``resized_size``.
    """

    coordinates: str
    image_size: tuple[int, int]
    resized_size: tuple[int, int] | None = None

    def __post_init__(self):
        if self.coordinates not in BOX_COORDINATES:
            raise ValueError(f"box coordinates {self.coordinates!r}: expected one of {list(BOX_COORDINATES)}")
        sizes = [self.image_size] + ([self.resized_size] if self.resized_size is not None else [])
        if any(len(size) != 2 or min(size) <= 0 for size in sizes):
            raise ValueError(f"box frame: image sizes must be two positive numbers, got {sizes}")
        if self.coordinates == "resized_pixels" and self.resized_size is None:
            raise ValueError("box coordinates 'resized_pixels' need the resized image size")

    def to_pixels(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        """``x1, y1, x2, y2`` in this frame → the same box in pixels of the image as given."""
        width, height = self.image_size
        span = {"pixels": (width, height), "resized_pixels": self.resized_size,
                "grid_1000": (1000, 1000), "unit": (1, 1)}[self.coordinates]
        sx, sy = width / span[0], height / span[1]
        x1, y1, x2, y2 = box
        return x1 * sx, y1 * sy, x2 * sx, y2 * sy


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``x1, y1, x2, y2`` boxes (0 when either has no area)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def yes_no(text: str) -> str | None:
    """``"yes"`` / ``"no"`` from the start of a response's final answer, else None."""
    match = _YES_NO.match(extract_answer(text))
    return match.group(1).lower() if match else None


def _norm_text(text: str) -> str:
    return re.sub(r"\s+", " ", extract_answer(text)).strip().lower().rstrip(".,!?;:")


def swap_changed(pair: SwapPair, original: str, swapped: str, *, iou_threshold: float = 0.5,
                 frame: BoxFrame | None = None) -> bool:
    """Whether a swapped answer counts as changed, by task (paper App. D.2.2).

    * ``ocr``: the normalised text differs from the original answer;
    * ``counting``: the parsed count differs (an unparseable answer on one side only counts as a
      change; on both sides, the normalised texts are compared);
    * ``grounding``: the swapped answer's box, converted to pixels by ``frame`` (default: already
      in pixels), has IoU > ``iou_threshold`` with ``pair.source_bbox`` (pixels);
    * ``recognition``: the original answer is Yes and the swapped answer is No.

    Raises:
        ValueError: unknown task, or a grounding pair without ``source_bbox``.
    """
    task = pair.task
    if task == "ocr":
        return _norm_text(original) != _norm_text(swapped)
    if task == "counting":
        a, b = parse_count(original), parse_count(swapped)
        if a is None and b is None:
            return _norm_text(original) != _norm_text(swapped)
        return a != b
    if task == "grounding":
        if pair.source_bbox is None:
            raise ValueError(f"{pair.id}: a grounding pair needs source_bbox")
        box = parse_box(swapped)
        if box is not None and frame is not None:
            box = frame.to_pixels(box)
        return box is not None and iou(box, pair.source_bbox) > iou_threshold
    if task == "recognition":
        return yes_no(original) == "yes" and yes_no(swapped) == "no"
    raise ValueError(f"{pair.id}: unknown swap task {task!r}; expected ocr, counting, grounding, recognition")
