"""Answer extraction and checking, and swap change criteria, against hand-checked answers."""

from __future__ import annotations

import pytest

from vlmdiag.measure import grading as g
from vlmdiag.probes.types import SwapPair


@pytest.mark.parametrize("response, expected", [
    ("<think>maybe 4</think><answer>5</answer>", "5"),
    ("so \\boxed{3.14}", "3.14"),                        # the reference code returned "14"
    ("<answer>2.5</answer>", "2.5"),                     # the reference code returned "5"
    ("\\boxed{1-\\sqrt{2}}", "1-\\sqrt{2}"),
    ("\\boxed{\\frac{1}{2}} and later \\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),
    ("<think>the answer is 7</think>The answer is 9.", "9"),
    ("We get 3 apples, then 12 pears", "12"),
    ("<think>long unfinished reasoning 42", ""),
    ("<answer>The final answer is \\boxed{12}</answer>", "12"),
], ids=lambda v: v if len(v) < 25 else v[:25])
def test_extract_answer(response, expected):
    assert g.extract_answer(response) == expected


@pytest.mark.parametrize("response, gold, choices, ok", [
    ("\\boxed{0.5}", "\\frac{1}{2}", None, True),
    ("\\boxed{\\frac{2}{4}}", "1/2", None, True),
    ("<answer>1,000</answer>", "1000", None, True),
    ("\\boxed{199}", "200", None, False),                 # the reference's 1 % tolerance said True
    ("\\boxed{x^2+2x}", "2x + x^2", None, True),
    ("\\boxed{3}", "4", None, False),
    ("<answer>B</answer>", "9.6", ("3.2", "9.6", "1.0"), True),
    ("The answer is (C).", "C", ("a", "b", "c"), True),
    ("<answer>A</answer>", "C", ("a", "b", "c"), False),
    ("\\boxed{\\text{Yes}}", "yes", None, True),
    ("", "3", None, False),
])
def test_is_correct(response, gold, choices, ok):
    assert g.is_correct(response, gold, choices=choices) is ok


def _pair(task, **kw):
    return SwapPair("p", task, None, None, "q", **kw)


@pytest.mark.parametrize("task, original, swapped, kw, changed", [
    ("ocr", "backpropagation", "Backpropagation.", {}, False),
    ("ocr", "backpropagation", "singular", {}, True),
    ("counting", "There are 3 items.", "3", {}, False),
    ("counting", "3", "ten", {}, True),
    ("counting", "three", "3", {}, False),
    ("grounding", "283,278,368,348", "15,320,81,382", dict(source_bbox=(15, 320, 81, 382)), True),
    ("grounding", "283,278,368,348", "20,330,90,390", dict(source_bbox=(15, 320, 81, 382)), True),
    ("grounding", "283,278,368,348", "283,278,368,348", dict(source_bbox=(15, 320, 81, 382)), False),
    ("grounding", "283,278,368,348", "no box", dict(source_bbox=(15, 320, 81, 382)), False),
    ("recognition", "Yes", "No.", {}, True),
    ("recognition", "Yes", "Yes", {}, False),
    ("recognition", "No", "No", {}, False),
])
def test_swap_changed(task, original, swapped, kw, changed):
    assert g.swap_changed(_pair(task, **kw), original, swapped) is changed


def test_iou_hand_checked():
    assert g.iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert g.iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert g.iou((15, 320, 81, 382), (20, 330, 90, 390)) == pytest.approx(3172 / 5120)


def test_swap_changed_errors():
    with pytest.raises(ValueError, match="unknown swap task"):
        g.swap_changed(_pair("colour"), "a", "b")
    with pytest.raises(ValueError, match="needs source_bbox"):
        g.swap_changed(_pair("grounding"), "a", "1,2,3,4")


# --------------------------------------------------------------------------- box coordinates


@pytest.mark.parametrize("text, box", [
    ('{"bbox_2d": [10, 20, 30, 40], "label": "cat"}', (10, 20, 30, 40)),            # Qwen2.5-VL / Qwen3-VL
    ("<|box_start|>(120,340),(560,780)<|box_end|>", (120, 340, 560, 780)),          # Qwen2-VL
    ("<ref>cat</ref><box>[[120, 340, 560, 780]]</box>", (120, 340, 560, 780)),      # InternVL
    ("[0.12, 0.34, 0.56, 0.78]", (0.12, 0.34, 0.56, 0.78)),                         # 0-1
    ("box_2d v2 (3, 1, 1, 3)", (1, 1, 3, 3)),
    ("bbox_2d only", None),
])
def test_parse_box_formats(text, box):
    assert g.parse_box(text) == (pytest.approx(box) if box else None)


@pytest.mark.parametrize("frame, predicted, pixels", [
    (g.BoxFrame("pixels", (400, 200)), (40, 20, 80, 60), (40, 20, 80, 60)),
    # Qwen2.5-VL: pixels of the resized input, here 392 x 196 for a 400 x 200 image
    (g.BoxFrame("resized_pixels", (400, 200), (392, 196)), (39.2, 19.6, 78.4, 58.8), (40, 20, 80, 60)),
    (g.BoxFrame("grid_1000", (400, 200)), (100, 100, 200, 300), (40, 20, 80, 60)),
    (g.BoxFrame("unit", (400, 200)), (0.1, 0.1, 0.2, 0.3), (40, 20, 80, 60)),
])
def test_box_frames_convert_to_pixels(frame, predicted, pixels):
    assert frame.to_pixels(predicted) == pytest.approx(pixels)


def test_grounding_iou_is_taken_after_the_conversion():
    pair = _pair("grounding", source_bbox=(40, 20, 80, 60))
    thousandths = "(100,100),(200,300)"  # the source box on a 0-1000 grid of a 400 x 200 image
    assert g.swap_changed(pair, "x", thousandths, frame=g.BoxFrame("grid_1000", (400, 200)))
    assert not g.swap_changed(pair, "x", thousandths)  # read as pixels it misses the box
    assert g.swap_changed(pair, "x", "[0.1, 0.1, 0.2, 0.3]", frame=g.BoxFrame("unit", (400, 200)))
    assert not g.swap_changed(pair, "x", "[0.1, 0.1, 0.2, 0.3]", frame=g.BoxFrame("grid_1000", (400, 200)))


def test_box_frame_errors():
    with pytest.raises(ValueError, match="expected one of"):
        g.BoxFrame("percent", (10, 10))
    with pytest.raises(ValueError, match="need the resized image size"):
        g.BoxFrame("resized_pixels", (10, 10))
    with pytest.raises(ValueError, match="positive"):
        g.BoxFrame("unit", (0, 10))


def test_every_family_declares_its_box_coordinates():
    """The conventions the families document (Qwen2.5-VL: absolute pixels of the resized image;
    Qwen2-VL, Qwen3-VL, InternVL: 0-1000; the others: 0-1)."""
    from vlmdiag.adapters import adapters

    expected = {"qwen2_5_vl": "resized_pixels", "qwen2_vl": "grid_1000", "qwen3_vl": "grid_1000",
                "internvl": "grid_1000", "llava": "unit", "llava_onevision": "unit", "gemma3": "unit",
                "idefics3": "unit", "smolvlm": "unit"}
    assert {name: a.box_coordinates for name, a in adapters().items()} == expected
