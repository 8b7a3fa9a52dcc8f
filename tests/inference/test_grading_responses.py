"""Grading on responses as real VLMs write them (Qwen2.5-VL-Instruct, R1-style reasoners), on the
model organism's own formats, and the token-budget truncation from generation to the scores."""

from __future__ import annotations

import pytest

from vlmdiag.measure import grading as g

# (response, gold, choices, expected answer, correct) — written after Qwen2.5-VL-7B-Instruct,
# R1-style RL models (VL-Rethinker, OpenVLThinker, MM-Eureka) and Qwen3-VL-Thinking outputs.
REALISTIC = [
    # Qwen2.5-VL-Instruct, MathVista free-form: a sentence, then the number
    ("To find the total, add the two bars: 45 + 30 = 75.\n\nSo, the total is 75.", "75", None, "75", True),
    # Qwen2.5-VL-Instruct, multiple choice: the letter and the option text
    ("B. 9.6", "9.6", ("3.2", "9.6", "1.0", "4.8"), "9.6", True),
    # Qwen2.5-VL-Instruct, counting with a unit noun
    ("There are 1,024 people in the stadium section.", "1024", None, "1,024", True),
    # R1 think/answer with a draft answer in the reasoning
    ("<think>\nThe angle ABC is 40°, so angle ACB = 180 - 40 - 70 = 70. Wait, the answer might be 60? "
     "No: the triangle is isosceles, so it is 70.\n</think>\n<answer>70</answer>", "70", None, "70", True),
    # R1 think then boxed (OpenVLThinker, MM-Eureka)
    ("<think>Area = 1/2 * base * height = 1/2 * 6 * 4 = 12.</think>\nThe area of the triangle is "
     "$\\boxed{12 \\text{ cm}^2}$.", "12", None, "12 \\text{ cm}^2", True),
    # Qwen3-VL-Thinking: the template opened <think>, the response only closes it
    ("Okay, let me look at the chart. The blue bar reaches 3.5 and the red bar 2.0, so the "
     "difference is 1.5.\n</think>\n\nThe difference is **1.5**.", "1.5", None, "1.5", True),
    # R1 multiple choice: letter inside <answer>, options mentioned in the reasoning
    ("<think>Option (A) says 30°, (C) says 60°. The inscribed angle is half the central angle 120°, "
     "so 60°.</think>\n<answer>C</answer>", "C", ("30°", "45°", "60°", "90°"), "60°", True),
    # the option's text instead of its letter
    ("<think>It is clearly a bicycle.</think><answer>bicycle</answer>", "B", ("car", "bicycle", "bus"), "bicycle", True),
    # yes/no with an explanation
    ("Yes, there is a red triangle in the lower-right corner of the image.", "Yes", None,
     "Yes, there is a red triangle in the lower-right corner of the image", True),
    ("No, the image does not contain a dog.", "yes", None, "No, the image does not contain a dog", False),
    # LaTeX fraction graded by math-verify against a decimal gold
    ("<think>P = 3/4 of the 4 marbles...</think>\n<answer>$\\frac{3}{4}$</answer>", "0.75", None, "$\\frac{3}{4}$", True),
    # "Final Answer" in markdown, a wrong number
    ("Step 1: count the cubes: 8.\nStep 2: remove 3.\n\n**Final Answer:** 4", "5", None, "4", False),
    # a wrong option letter
    ("The answer is (D).", "A", ("red", "green", "blue", "yellow"), "yellow", False),
]


@pytest.mark.parametrize("response, gold, choices, answer, correct", REALISTIC,
                         ids=[f"real-{i}" for i in range(len(REALISTIC))])
def test_realistic_responses(response, gold, choices, answer, correct):
    graded = g.grade(response, gold, choices=choices)
    assert (graded.answer, graded.correct, graded.truncated) == (answer, correct, False)


@pytest.mark.parametrize("response", [
    # R1-style, cut inside <think> by a 32-token budget
    "<think>\nFirst, I need to count the apples in the image. There are 3 on the left and",
    # template-opened <think>: no tag in the response at all, cut mid-sentence; the last number is not the answer
    "Okay, so the question asks for the sum. 3 + 4 = 7, then I need to multiply by",
    # cut inside the <answer> tag
    "<think>12 * 3 = 36</think><answer>3",
    # cut inside an unfinished \boxed{
    "The area is \\boxed{\\frac{3",
    # cut inside the number of an answer phrase (it may have gone on: 7 -> 75)
    "<think>70 + 5</think>The answer is 7",
])
def test_cut_off_responses_are_truncated_not_graded(response):
    graded = g.grade(response, "7", hit_budget=True)
    assert graded.truncated and not graded.correct
    # the same text ending at EOS is graded as written (not reported as truncated)
    assert not g.grade(response, "7").truncated


def test_qwen2_5_vl_grounding_json():
    response = ('```json\n[\n\t{"bbox_2d": [135, 114, 1016, 672], "label": "the cat on the left"}\n]\n```')
    assert g.parse_box(response) == (135, 114, 1016, 672)
    frame = g.BoxFrame("resized_pixels", (2000, 1000), (1008, 504))  # Qwen2.5-VL: resized pixels
    assert frame.to_pixels(g.parse_box(response)) == pytest.approx((135 * 2000 / 1008, 114 * 1000 / 504,
                                                                    1016 * 2000 / 1008, 672 * 1000 / 504))


# --------------------------------------------------------------------------- the organism's formats


def test_organism_grading_unchanged_on_its_own_outputs():
    """On what the organism writes — ``<think>…</think><answer>…</answer>`` (IN, RL) or the bare
    answer (Base), with any answer of its vocabulary, right or wrong — the grader agrees with the
    organism's own reward (``organism.tasks.is_correct``, which the RL stage was trained on), so
    the organism's scores and verdicts do not move."""
    from vlmdiag.organism import tasks as T

    items = [it for kind in ("vqa", "math_vqa", "text_math") for it in T.ability_items(kind, 12, seed=3)]
    vocabulary = [str(n) for n in range(13)] + ["yes", "no"]
    checked = 0
    for item in items:
        task = item.meta["task"]
        traces = ["count the shapes", "look for a triangle", "read the corner", "4+2=6", "7"]
        for said in vocabulary:
            tagged = [f"<think>{t}</think><answer>{said}</answer>" for t in traces]
            cases = [(r, hit) for r in tagged for hit in (False, True)] + [(said, False), (f"{said}.", False)]
            # a bare answer runs into the budget only by repeating itself (the organism's own
            # reward and this grader say wrong; the old grader took the last number)
            cases += [(" ".join([said] * 16), True), (tagged[0] + tagged[0][:9], True)]
            for response, hit_budget in cases:
                assert g.is_correct(response, item.answer, hit_budget=hit_budget) == \
                    T.is_correct(task, response, item.answer), (response, hit_budget, item.answer)
                checked += 1
    assert checked > 3000
    # and the organism's training targets are graded right
    for task in ("recognition", "counting", "reading", "arithmetic"):
        for item in T.generate(task, 10, seed=5, held_out=True):
            assert g.is_correct(T.reasoning_target(item), item.answer)
            assert g.is_correct(T.short_target(item), item.answer)


# --------------------------------------------------------------------------- generation says why it stopped


def test_generation_reports_whether_it_hit_the_budget(qwen_loaded, monkeypatch):
    """A row that emits a stop token has ``hit_budget`` False and ends before it; a row that runs
    to ``max_new_tokens`` has it True. The stop token is made one the random model writes."""
    from vlmdiag.runtime.generate import generate, text_prompt

    prompts = [text_prompt(q) for q in ("What is 2 + 3?", "Name a colour.", "Count to five.")]
    free = generate(qwen_loaded, prompts, max_new_tokens=8)
    assert all(gen.hit_budget and len(gen.token_ids) == 8 for gen in free)
    stop = int(free[0].token_ids[3])  # the 4th token of the first answer becomes an end-of-sequence token
    monkeypatch.setattr(qwen_loaded.model.generation_config, "eos_token_id", [stop])
    stopped = generate(qwen_loaded, prompts, max_new_tokens=8)
    first = stopped[0]
    assert not first.hit_budget and len(first.token_ids) <= 3 and stop not in first.token_ids.tolist()
    for before, after in zip(free[1:], stopped[1:]):
        assert after.hit_budget == (stop not in before.token_ids.tolist())
