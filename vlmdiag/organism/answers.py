"""Answers of the model organism's tasks: bounding-box text, ``<answer>`` extraction, the
reasoning format and scoring (:func:`is_correct`, also the RL stage's correctness reward)."""

from __future__ import annotations

import re


def format_bbox(box: tuple[float, float, float, float]) -> str:
    """``[x1,y1,x2,y2]`` with integer pixels."""
    return "[" + ",".join(str(int(round(v))) for v in box) + "]"


def parse_bbox(text: str) -> tuple[float, float, float, float] | None:
    """The first four integers in ``text`` as a box, or None."""
    nums = re.findall(r"-?\d+", text)
    if len(nums) < 4:
        return None
    return tuple(float(v) for v in nums[:4])  # type: ignore[return-value]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 for degenerate boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.S)
_FORMAT_RE = re.compile(r"^\s*<think>.+?</think>\s*<answer>.+?</answer>\s*$", re.S)


def extract_answer(text: str) -> str:
    """The content of the last ``<answer>…</answer>``, else the stripped text, lower-cased."""
    found = _ANSWER_RE.findall(text)
    ans = found[-1] if found else text
    return ans.strip().strip(".").strip().lower()


def has_reasoning_format(text: str) -> bool:
    """True when ``text`` is exactly ``<think>…</think><answer>…</answer>`` (whitespace allowed)."""
    return bool(_FORMAT_RE.match(text))


def is_correct(task: str, prediction: str, answer: str) -> bool:
    """Score one generated text: grounding by IoU >= 0.5, other tasks by exact answer match."""
    pred = extract_answer(prediction)
    if task == "grounding":
        box, gt = parse_bbox(pred), parse_bbox(answer)
        return box is not None and gt is not None and iou(box, gt) >= 0.5
    return pred == answer.strip().lower()

