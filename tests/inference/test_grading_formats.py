"""Property tests over the response formats real VLMs write: a canonical answer wrapped in each
format is extracted and graded right; an answer inside unfinished reasoning is never taken; a
response cut off by the token budget before its answer is truncated, not graded."""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vlmdiag.measure import grading as g

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Reasoning text as models write it: words, numbers, arithmetic, even an "answer is" of its own
# (a tentative one, inside <think>) — but never a tag or a \boxed of its own.
_word = st.sampled_from("so the image shows apples wait let me count again maybe first then total is "
                        "hmm check option area of triangle answer".split())
_token = st.one_of(_word, st.integers(-99, 9999).map(str), st.sampled_from(["+", "=", "-", "*", ",", ".", "(A)", "\n"]))
reasoning = st.lists(_token, min_size=1, max_size=40).map(" ".join)

integers = st.integers(-10**7, 10**7)


def thousands(n: int) -> str:
    return f"{n:,}"


# Each format: (name, template); {r} is reasoning, {a} the answer as the model writes it.
FORMATS = [
    ("r1 think/answer", "<think>{r}</think>\n<answer>{a}</answer>"),
    ("r1 think/answer, spaced", "<think>\n{r}\n</think>\n\n<answer> {a} </answer>"),
    ("r1 answer with boxed", "<think>{r}</think><answer>The answer is \\boxed{{{a}}}</answer>"),
    ("template-opened think", "{r}\n</think>\n\n**Final Answer:** {a}"),
    ("boxed after reasoning", "{r}\nTherefore, the final answer is $\\boxed{{{a}}}$."),
    ("answer is", "<think>{r}</think>\nThe answer is {a}."),
    ("final answer colon", "<think>{r}</think>\nFinal answer: {a}"),
    ("answer colon", "Answer: {a}\n"),
    ("bare answer tag", "<answer>{a}</answer>"),
    ("bare", "{a}"),
    ("bare with period", "{a}."),
    ("markdown bold", "<think>{r}</think>\n**Answer:** **{a}**"),
]
format_templates = st.sampled_from(FORMATS)


def states_an_answer(r: str) -> bool:
    """Whether reasoning ``r`` itself states an answer as a finished sentence or line."""
    return bool(re.search(r"answer\s*(?:is|:|=)\s*:?\s*\S.*?(?:[.?!;](?:\s|$)|\n)", r, re.IGNORECASE))


@SETTINGS
@given(n=integers, r=reasoning, fmt=format_templates)
def test_integer_in_every_format_is_extracted(n, r, fmt):
    name, template = fmt
    response = template.format(r=r, a=n)
    assert g.extract_answer(response) == str(n), name
    assert g.is_correct(response, str(n)) and not g.is_correct(response, str(n + 1)), name


@SETTINGS
@given(n=integers, r=reasoning, fmt=format_templates, unit=st.sampled_from(["", " cm", " apples", "%", " m^2", " \\text{kg}"]))
def test_number_written_with_separators_or_units_is_graded_equal(n, r, fmt, unit):
    name, template = fmt
    assume(not (name.startswith("boxed") or "boxed" in template) or "^" not in unit)
    written = thousands(n) + unit
    response = template.format(r=r, a=written)
    assert g.is_correct(response, str(n)), (name, g.final_answer(response))
    assert not g.is_correct(response, str(n + 7)), name


@SETTINGS
@given(whole=st.integers(0, 999), frac=st.integers(1, 999), r=reasoning, fmt=format_templates)
def test_decimal_is_extracted_whole(whole, frac, r, fmt):
    decimal = f"{whole}.{frac:03d}"
    name, template = fmt
    response = template.format(r=r, a=decimal)
    assert g.extract_answer(response) == decimal, name  # not cut to its tail (the reference's bug)
    assert g.is_correct(response, decimal), name


@settings(max_examples=40, deadline=None)
@given(p=st.integers(1, 30), q=st.integers(2, 30), r=reasoning,
       fmt=st.sampled_from([f for f in FORMATS if "boxed" in f[1] or "answer>" in f[1]]))
def test_fraction_is_graded_by_math_verify(p, q, r, fmt):
    name, template = fmt
    response = template.format(r=r, a=f"\\frac{{{p}}}{{{q}}}")
    assert g.extract_answer(response) == f"\\frac{{{p}}}{{{q}}}", name
    assert g.is_correct(response, f"{p / q:.12g}") or len(f"{p / q:.12g}") > 10, name  # exact decimals only
    assert not g.is_correct(response, f"{p / q + 1:.6g}"), name


@SETTINGS
@given(r=reasoning, depth=st.integers(1, 4), inner=st.integers(0, 99))
def test_boxed_with_nested_braces(r, depth, inner):
    latex = "\\sqrt{" * depth + str(inner) + "}" * depth
    response = f"{r} so \\boxed{{{latex}}}."
    assert g.extract_answer(response) == latex


# --------------------------------------------------------------------------- yes/no, multiple choice

YES_NO_FORMS = ["{Y}", "{y}.", "{Y}, there is.", "{Y}, the image shows it.", "<answer>{Y}</answer>",
                "<think>{r}</think>\n<answer>{y}</answer>", "\\boxed{{\\text{{{Y}}}}}", "{YY}",
                "<think>{r}</think>The answer is {y}."]


@SETTINGS
@given(word=st.sampled_from(["yes", "no"]), r=reasoning, form=st.sampled_from(YES_NO_FORMS))
def test_yes_no_variants(word, r, form):
    response = form.format(Y=word.capitalize(), y=word, YY=word.upper(), r=r)
    other = "no" if word == "yes" else "yes"
    assert g.is_correct(response, word) and not g.is_correct(response, other), response
    assert g.is_correct(response, word.capitalize())


options = st.lists(st.from_regex(r"[a-z]{3,9}( [a-z]{3,9})?", fullmatch=True), min_size=2, max_size=6, unique=True)
MC_FORMS = ["{L}", "({L})", "{L}.", "{L}) {T}", "{L}. {T}", "Answer: {L}", "The answer is ({L}).",
            "<answer>{L}</answer>", "<think>{r}</think>\n<answer>{L}</answer>", "\\boxed{{{L}}}",
            "<answer>{T}</answer>", "The correct option is {L}.", "<think>{r} (A)</think>The answer is ({L}) {T}.",
            "**{L}**"]


@SETTINGS
@given(choices=options, data=st.data(), r=reasoning, form=st.sampled_from(MC_FORMS))
def test_option_letter_or_text_maps_to_the_option(choices, data, r, form):
    index = data.draw(st.integers(0, len(choices) - 1))
    letter = "ABCDEFGH"[index]
    response = form.format(L=letter, T=choices[index], r=r)
    assert g.extract_answer(response, choices=choices) == choices[index], response
    assert g.is_correct(response, letter, choices=choices)
    assert g.is_correct(response, choices[index], choices=choices)
    wrong = "ABCDEFGH"[(index + 1) % len(choices)]
    assert not g.is_correct(response, wrong, choices=choices)


# --------------------------------------------------------------------------- boxes

boxes = st.tuples(st.integers(0, 499), st.integers(0, 499), st.integers(500, 1000), st.integers(500, 1000))
BOX_FORMS = [
    lambda b: json.dumps([{"bbox_2d": list(b), "label": "cat"}]),                          # Qwen2.5-VL
    lambda b: "```json\n" + json.dumps([{"bbox_2d": list(b), "label": "the red cup"}], indent=2) + "\n```",
    lambda b: f"<|box_start|>({b[0]},{b[1]}),({b[2]},{b[3]})<|box_end|>",                 # Qwen2-VL
    lambda b: f"({b[0]},{b[1]}),({b[2]},{b[3]})",   # the same with special tokens skipped in decoding
    lambda b: f"<ref>cat</ref><box>[[{b[0]}, {b[1]}, {b[2]}, {b[3]}]]</box>",               # InternVL
    lambda b: f"[{b[0]}, {b[1]}, {b[2]}, {b[3]}]",
    lambda b: f"There are 2 cats; the left one is at [{b[0]}, {b[1]}, {b[2]}, {b[3]}].",
    lambda b: f"<think>3 objects, 2 of them red, about 40 px wide</think><answer>[{b[0]},{b[1]},{b[2]},{b[3]}]</answer>",
    lambda b: f"The bounding box is \\boxed{{[{b[0]}, {b[1]}, {b[2]}, {b[3]}]}}.",
]


@SETTINGS
@given(box=boxes, form=st.sampled_from(range(len(BOX_FORMS))))
def test_box_formats_parse_to_the_box(box, form):
    assert g.parse_box(BOX_FORMS[form](box)) == tuple(float(v) for v in box)


# --------------------------------------------------------------------------- negative properties


@SETTINGS
@given(n=integers, r=reasoning, tail=st.sampled_from(["the answer is {a}", "<answer>{a}</answer>", "\\boxed{{{a}}}",
                                                       "Final answer: {a}", "{a}"]))
def test_answer_inside_unclosed_think_is_not_taken(n, r, tail):
    response = f"<think>{r} " + tail.format(a=n)
    assert g.extract_answer(response) == ""
    assert not g.is_correct(response, str(n))
    graded = g.grade(response, str(n), hit_budget=True)
    assert graded.truncated and not graded.correct


@SETTINGS
@given(n=integers, m=integers, r=reasoning)
def test_the_final_answer_wins_over_reasoning_and_earlier_drafts(n, m, r):
    assume(n != m)
    assert g.extract_answer(f"<think>{r} the answer is {m}</think>\n<answer>{n}</answer>") == str(n)
    assert g.extract_answer(f"<think>{r} \\boxed{{{m}}}</think> The answer is {n}.") == str(n)
    assert g.extract_answer(f"{r} \\boxed{{{m}}} wait, that is wrong. \\boxed{{{n}}}") == str(n)
    assert g.extract_answer(f"The answer is {m}? No, let me redo it: the answer is {n}.") == str(n)


@SETTINGS
@given(n=integers, r=reasoning)
def test_budget_hit_in_free_text_is_truncated_even_when_the_gold_number_appears(n, r):
    assume(not states_an_answer(r))   # "answer = so ." is a stated (wrong) answer, not free text
    response = f"Let me think. {r} so far {n}, and then"
    assert not g.grade(response, str(n)).truncated          # stopped at EOS: graded as written
    graded = g.grade(response, str(n), hit_budget=True)
    assert graded.truncated and not graded.correct


@SETTINGS
@given(n=integers, r=reasoning, fmt=st.sampled_from([f for f in FORMATS if f[0] not in ("bare", "bare with period", "template-opened think")]))
def test_budget_hit_after_an_explicit_answer_is_graded(n, r, fmt):
    """A response that states its answer and then runs on to the budget (repeating itself, say)
    is graded, not truncated, also when the run-on ends in an unfinished answer phrase of its
    own ("... answer = so", cut by the budget)."""
    # a run-on that states another answer as a finished sentence is a later answer, not a run-on
    assume(not states_an_answer(r))
    response = fmt[1].format(r=r, a=n) + "\n" + r
    graded = g.grade(response, str(n), hit_budget=True)
    assert not graded.truncated and graded.correct, (fmt[0], graded)


def test_budget_cut_phrase_after_an_explicit_answer():
    """The example hypothesis found: the run-on repeats reasoning that holds "answer = ...", cut."""
    graded = g.grade("<think>answer = so</think>\nThe answer is 0.\nanswer = so", "0", hit_budget=True)
    assert not graded.truncated and graded.correct
    cut = g.grade("<think>x</think>\nThe answer is 1", "12", hit_budget=True)
    assert cut.truncated and not cut.correct
    assert g.extract_answer("The answer is 5. Hmm, the answer is 6") == "6"   # no budget hit: the last one


def test_budget_cut_phrase_after_an_answer_ended_by_a_line_break():
    """The example hypothesis found in CI (stop 20): "Final answer: 0" ended by its line break, then a cut phrase."""
    graded = g.grade("<think>answer = so</think>\nFinal answer: 0\nanswer = so", "0", hit_budget=True)
    assert not graded.truncated and graded.correct
    ended = g.grade("<think>\n</think>\nFinal answer: 0\n\n", "0", hit_budget=True)   # found next, exploring
    assert not ended.truncated and ended.correct
    run_on = g.grade("<think>x</think>\nThe answer is 0 because answer = so", "0", hit_budget=True)
    assert run_on.truncated and not run_on.correct       # no line or sentence end: still one cut phrase
