"""Rule-based answer extraction and checking, and the task-specific swap "changed" criteria.

Extraction order (after removing ``<think>…</think>`` blocks): the first ``<answer>…</answer>``,
else the last ``\\boxed{…}`` (nested braces matched), else — for multiple choice — the chosen
letter, else an "answer is …" phrase, else the last number, else the stripped text. Unlike the
reference ``_extract_answer`` (``notes/reference-implementation.md`` §8.6) nothing is cut off the
head of an extracted answer: ``\\boxed{3.14}`` stays ``3.14``.

Equivalence (:func:`answers_equivalent`): normalised exact match, then ``math_verify``, then a
numeric comparison with absolute tolerance 1e-6 or relative 1e-4 (the reference's 1 % relative
tolerance counts 199 as 200; this one does not).

Swap criteria (paper App. D.2.2, :func:`swap_changed`): OCR text differs; the count differs; the
predicted box has IoU > 0.5 with the source box; a recognition answer flips Yes → No.

Boxes: models write coordinates in their family's convention (:data:`BOX_COORDINATES`, set per
family in ``vlmdiag/adapters/families.yaml``); :class:`BoxFrame` converts a predicted box to the
probe's pixel coordinates before the IoU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from vlmdiag.adapters import BOX_COORDINATES
from vlmdiag.probes.types import SwapPair

_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ANSWER_IS = re.compile(r"(?:final\s+)?answer\s*(?:is|:)\s*[:\s]*(.+?)(?:\.\s|\.?$|\n)", re.IGNORECASE)
_LETTER_PATTERNS = [
    re.compile(r"^\s*\(?([A-H])\)?\s*(?:[.):]|$)"),
    re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-H])\)?\b", re.IGNORECASE),
    re.compile(r"\(([A-H])\)"),
]
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}


def strip_think(text: str) -> str:
    """Remove every ``<think>…</think>`` block (an unclosed block runs to the end)."""
    return _THINK_BLOCK.sub("", text)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` (or ``\\fbox{…}``) with nested braces, else None."""
    for marker in ("\\boxed", "\\fbox"):
        start = text.rfind(marker + "{")
        if start < 0:
            continue
        i = start + len(marker) + 1
        depth, begin = 1, i
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[begin:i].strip()
            i += 1
        return None
    return None


def choice_letter(text: str, n_choices: int = 8) -> str | None:
    """A multiple-choice letter A.. (up to ``n_choices``) chosen in ``text``, else None."""
    allowed = "ABCDEFGH"[:max(1, min(n_choices, 8))]
    for pattern in _LETTER_PATTERNS:
        match = pattern.search(text)
        if match and match.group(1).upper() in allowed:
            return match.group(1).upper()
    return None


def extract_answer(response: str, *, choices: Sequence[str] | None = None) -> str:
    """The final answer in a model response.

    Args:
        response: the decoded response.
        choices: the option texts of a multiple-choice item; a chosen letter is mapped to its text.

    Returns:
        The extracted answer string (possibly empty).
    """
    text = strip_think(response).strip()
    tag = _ANSWER_TAG.search(text)
    if tag:
        text = tag.group(1).strip()
    boxed = last_boxed(text)
    if boxed is not None:
        candidate = boxed
    elif tag:
        candidate = text
    else:
        match = _ANSWER_IS.search(text)
        candidate = match.group(1).strip() if match and len(match.group(1)) < 100 else None
        if candidate is None and not choices:
            numbers = _NUMBER.findall(text)
            candidate = numbers[-1] if numbers else text
        candidate = candidate if candidate is not None else text
    if choices:
        letter = choice_letter(candidate, len(choices))
        if letter is not None and (len(candidate) <= 3 or candidate.upper().startswith(letter)):
            return choices["ABCDEFGH".index(letter)]
    return candidate.strip().rstrip(".")


def _normalise(text: str) -> str:
    text = text.strip().strip("$").replace("\\!", "").replace("\\,", "")
    text = re.sub(r"\\text\{(.*?)\}", r"\1", text)
    return re.sub(r"\s+", "", text).lower().rstrip(".")


def _as_number(text: str) -> float | None:
    cleaned = _normalise(text).replace(",", "").replace("%", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


def _math_verify(pred: str, gold: str) -> bool:
    try:
        from math_verify import parse, verify
    except ImportError:  # pragma: no cover - math-verify is a dependency
        return False
    try:
        wrap = lambda s: s if "$" in s or "\\boxed" in s else f"${s}$"  # noqa: E731
        gold_parsed = parse(wrap(gold))
        pred_parsed = parse(wrap(pred))
        return bool(gold_parsed) and bool(pred_parsed) and bool(verify(gold_parsed, pred_parsed))
    except Exception:
        return False


def answers_equivalent(pred: str, gold: str) -> bool:
    """True when an extracted answer equals the gold answer.

    Normalised exact match (case, spaces, ``$``, ``\\text{}``), then ``math_verify``
    (``\\frac{1}{2}`` = ``0.5``), then numbers within 1e-6 absolute or 1e-4 relative.
    Empty answers are never equivalent.
    """
    if not pred.strip() or not gold.strip():
        return False
    if _normalise(pred) == _normalise(gold):
        return True
    p, g = _as_number(pred), _as_number(gold)
    if p is not None and g is not None:
        return abs(p - g) < 1e-6 or (g != 0 and abs(p - g) / abs(g) < 1e-4)
    return _math_verify(pred, gold)


def is_correct(response: str, gold: str, *, choices: Sequence[str] | None = None) -> bool:
    """Extract the answer from ``response`` and compare it with ``gold`` (see module docstring).
    For multiple choice, a gold given as a letter is mapped to its option text."""
    if choices and len(gold.strip()) == 1 and gold.strip().upper() in "ABCDEFGH"[:len(choices)]:
        gold = choices["ABCDEFGH".index(gold.strip().upper())]
    return answers_equivalent(extract_answer(response, choices=choices), gold)


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


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """The first 4 numbers of an answer as a box ``x1, y1, x2, y2`` (corners sorted), else None.
    Numbers glued to a word (``bbox_2d``) are not coordinates; the formats of Qwen2.5-VL
    (``{"bbox_2d": [x1, y1, x2, y2]}``), Qwen2-VL (``(x1,y1),(x2,y2)``) and InternVL
    (``[[x1, y1, x2, y2]]``) all parse."""
    numbers = _BOX_NUMBER.findall(strip_think(text))
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
    """``"yes"`` / ``"no"`` from the start of an answer, else None."""
    match = re.match(r"\W*(yes|no)\b", extract_answer(text).lower())
    return match.group(1) if match else None


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
