"""The ability runner: conditions built per item, grading, batching, the answer cache."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vlmdiag.errors import ProbeError
from vlmdiag.measure.abilities import answer_key, build_prompts, default_grade, run_abilities, score_abilities
from vlmdiag.probes.prompts import described_question
from vlmdiag.probes.types import AbilityItem


def red(size=(40, 30)) -> Image.Image:
    return Image.new("RGB", size, (255, 0, 0))


ITEMS = [
    AbilityItem("v1", "vqa", "What colour?", "red", image=red()),
    AbilityItem("v2", "vqa", "Is it dark?", "yes", image=red((20, 20))),
    AbilityItem("m1", "math_vqa", "2 + red squares?", "3", image=red(), description="one red square"),
    AbilityItem("m2", "math_vqa", "no description here", "5", image=red()),
    AbilityItem("t1", "text_math", "1 + 1?", "2"),
]


class FakeModel:
    """Answers from what it is shown: the pixels (red or black) and the words of the prompt."""

    def __init__(self):
        self.calls = []

    def __call__(self, messages_batch, images_batch):
        self.calls.append([img is not None for img in images_batch])
        out = []
        for messages, image in zip(messages_batch, images_batch):
            text = messages[0]["content"][-1]["text"]
            black = image is not None and not np.asarray(image).any()
            if "colour" in text:
                out.append("<think>it is red</think><answer>red</answer>" if not black else "<answer>black</answer>")
            elif "dark" in text:
                out.append("\\boxed{yes}" if black else "\\boxed{no}")
            elif "Image Description: one red square" in text:
                out.append("<answer>3</answer>")
            elif "red squares" in text:
                out.append("\\boxed{3}" if not black else "\\boxed{2}")
            else:
                out.append("The answer is 2.")
        return out


def test_conditions_per_kind():
    prompts, missing = build_prompts(ITEMS[0])
    assert [p.condition for p in prompts] == ["image", "black"]
    black = prompts[1].image
    assert black.size == (40, 30) and not np.asarray(black).any()
    assert prompts[0].messages == [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]
    prompts, _ = build_prompts(ITEMS[2])
    assert [p.condition for p in prompts] == ["image", "black_description"]
    assert prompts[1].messages[0]["content"][1]["text"] == described_question("one red square", "2 + red squares?")
    assert not np.asarray(prompts[1].image).any()
    prompts, missing = build_prompts(ITEMS[3])
    assert [p.condition for p in prompts] == ["image"] and "no image description" in missing["black_description"]
    prompts, _ = build_prompts(ITEMS[4])
    assert prompts[0].image is None and prompts[0].messages[0]["content"] == [{"type": "text", "text": "1 + 1?"}]


def test_run_and_score_end_to_end():
    model = FakeModel()
    outcomes = run_abilities(ITEMS, model, batch_size=2)
    assert {o.item_id: o.correct for o in outcomes} == {
        "v1": {"image": True, "black": False},
        "v2": {"image": False, "black": True},
        "m1": {"image": True, "black_description": True},
        "m2": {"image": False},
        "t1": {"text": True},
    }
    # image and text-only prompts never share a predict call; batches hold at most 2
    assert all(len(set(call)) == 1 and len(call) <= 2 for call in model.calls)
    scores = score_abilities(outcomes)
    assert scores["Mvis"].value == 0.5           # v1 counts (TF), v2 does not (FT)
    assert scores["Mv2r"].value == 1.0 and scores["Mv2r"].n == 1   # m2 has no description
    assert scores["Mv2r"].excluded == ("m2",) and scores["Mvis"].excluded == ()
    assert scores["Mrea"].value == 1.0


def test_grade_gets_choices_when_it_accepts_them():
    seen = []

    def grade(response, answer, *, choices=None):
        seen.append(choices)
        return True

    item = AbilityItem("c1", "text_math", "Pick one\nA. 4\nB. 5", "5", choices=("4", "5"))
    run_abilities([item], lambda m, i: ["B"], grade)
    assert seen == [("4", "5")]
    assert run_abilities([item], lambda m, i: ["B"], lambda r, a: r == "B")[0].correct == {"text": True}


def test_cache_serves_answers_without_asking_again():
    cache: dict[str, str] = {}
    first = FakeModel()
    run_abilities(ITEMS, first, cache=cache, fingerprint="abc", decoding={"max_new_tokens": 8})
    assert len(cache) == 8
    second = FakeModel()
    again = run_abilities(ITEMS, second, cache=cache, fingerprint="abc", decoding={"max_new_tokens": 8})
    assert second.calls == [] and again[0].correct == {"image": True, "black": False}
    third = FakeModel()
    run_abilities(ITEMS, third, cache=cache, fingerprint="other", decoding={"max_new_tokens": 8})
    assert sum(map(len, third.calls)) == 8
    with pytest.raises(ValueError, match="fingerprint"):
        run_abilities(ITEMS, FakeModel(), cache={})


def test_answer_key_changes_with_every_part():
    messages = [{"role": "user", "content": "q"}]
    base = answer_key("fp", "p1", "image", messages, {"max_new_tokens": 8}, red())
    assert base == answer_key("fp", "p1", "image", messages, {"max_new_tokens": 8}, red())
    for other in (answer_key("fp2", "p1", "image", messages, {"max_new_tokens": 8}, red()),
                  answer_key("fp", "p2", "image", messages, {"max_new_tokens": 8}, red()),
                  answer_key("fp", "p1", "black", messages, {"max_new_tokens": 8}, red()),
                  answer_key("fp", "p1", "image", [{"role": "user", "content": "q2"}], {"max_new_tokens": 8}, red()),
                  answer_key("fp", "p1", "image", messages, {"max_new_tokens": 9}, red()),
                  answer_key("fp", "p1", "image", messages, {"max_new_tokens": 8}, red((41, 30)))):
        assert other != base


def test_bad_items_and_bad_predict():
    with pytest.raises(ProbeError, match="needs an image"):
        build_prompts(AbilityItem("x", "vqa", "q", "a"))
    with pytest.raises(ProbeError, match=r"unique; repeated: \['t1'\]"):
        run_abilities([ITEMS[4], ITEMS[4]], FakeModel())
    with pytest.raises(ProbeError, match="predict returned 0 responses for 1"):
        run_abilities([ITEMS[4]], lambda m, i: [])


@pytest.mark.parametrize("response, gold, choices, expected", [
    ("<think>maybe 7</think><answer>3.14</answer>", "3.14", None, True),   # the reference cut this to "14"
    ("so \\boxed{\\frac{1}{2}}", "0.5", None, True),
    ("\\boxed{12}", "13", None, False),
    ("<answer>B</answer>", "9.6", ("1.2", "9.6"), True),
    ("<answer>A</answer>", "9.6", ("1.2", "9.6"), False),
    ("<think>\\boxed{4}</think> The answer is 5.", "5", None, True),
], ids=["answer-tag-decimal", "frac", "wrong", "mc-letter", "mc-wrong-letter", "think-stripped"])
def test_default_grade_hand_checked(response, gold, choices, expected):
    assert default_grade(response, gold, choices=choices) is expected


def test_budget_hit_responses_are_truncated_and_counted():
    """A response that ran out of the token budget before its answer is wrong and counted as
    truncated, per condition and per metric; one that stated its answer first is graded."""
    from vlmdiag.measure.abilities import Response

    def predict(messages_batch, images_batch):
        out = []
        for messages, image in zip(messages_batch, images_batch):
            text = messages[0]["content"][-1]["text"]
            black = image is not None and not np.asarray(image).any()
            if "colour" in text:      # v1: image answered in time, black cut inside <think>
                out.append(Response("<think>red, I think; the answer is red", True) if black
                           else Response("<think>it is red</think><answer>red</answer>", True))
            elif "dark" in text:      # v2: ended at EOS
                out.append("\\boxed{no}")
            else:                     # math and text items: cut in free text holding the gold number
                out.append(Response("Let me compute 1 + 1 = 2, then 3 and 5 and", True))
        return out

    outcomes = {o.item_id: o for o in run_abilities(ITEMS, predict)}
    assert outcomes["v1"].correct == {"image": True, "black": False} and outcomes["v1"].truncated == ("black",)
    assert outcomes["v2"].truncated == () and outcomes["t1"].truncated == ("text",)
    assert outcomes["m1"].correct == {"image": False, "black_description": False}
    scores = score_abilities(list(outcomes.values()))
    assert (scores["Mvis"].truncated, scores["Mv2r"].truncated, scores["Mrea"].truncated) == (1, 2, 1)
    assert scores["Mrea"].n == 1 and scores["Mrea"].value == 0.0      # truncated stays in N, as wrong
    assert scores["Mvis"].as_dict()["truncated"] == 1


def test_cache_keeps_whether_a_response_hit_the_budget():
    from vlmdiag.measure.abilities import Response

    cache = {}
    item = [ITEMS[4]]
    first = run_abilities(item, lambda m, i: [Response("<think>1 + 1 is", True)], cache=cache, fingerprint="f")
    again = run_abilities(item, lambda m, i: pytest.fail("asked again"), cache=cache, fingerprint="f")
    assert first[0].truncated == again[0].truncated == ("text",)


@pytest.mark.parametrize("answer_format, suffix", [
    ("none", ""),
    ("think_answer", "\nOutput the thinking process in <think> </think> and final answer in <answer> </answer> tags."),
    ("boxed", '\nPlease solve the problem step by step and put your answer in one "\\boxed{}".'),
])
def test_answer_format_is_appended_to_every_condition(answer_format, suffix):
    for item in ITEMS[:3] + ITEMS[4:]:
        plain, _ = build_prompts(item)
        prompts, _ = build_prompts(item, answer_format)
        for a, b in zip(plain, prompts):
            assert b.messages[0]["content"][-1]["text"] == a.messages[0]["content"][-1]["text"] + suffix
    with pytest.raises(ValueError, match="expected one of none, think_answer, boxed"):
        build_prompts(ITEMS[4], "json")


def test_answer_format_changes_the_cache_key():
    cache = {}
    run_abilities([ITEMS[4]], FakeModel(), cache=cache, fingerprint="f")
    run_abilities([ITEMS[4]], FakeModel(), cache=cache, fingerprint="f", answer_format="boxed")
    assert len(cache) == 2
