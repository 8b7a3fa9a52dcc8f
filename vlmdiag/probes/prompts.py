"""The user-message layouts every probe is asked in (pinned, so scores are comparable between
checkpoints and runs). The organism is trained on exactly these layouts, with no answer
instruction (``answer_format="none"``).

Reasoning models are asked with an answer instruction appended to the question
(:data:`ANSWER_FORMATS`): the paper's recipes used both the R1 ``<think>…</think><answer>…</answer>``
layout (OpenMMReasoner, MMR1) and ``\\boxed{}`` (Revisual; every transfer query of the authors'
code). :mod:`vlmdiag.measure.grading` reads all of them, whichever was asked for.
"""

from __future__ import annotations

#: Answer instructions appended to a probe's question, by name.
ANSWER_FORMATS: dict[str, str] = {
    "none": "",
    # R1-V / VLM-R1's template (also the layout of the organism's own reasoning traces).
    "think_answer": "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.",
    # The authors' query prefix for every transfer and layer-skip question (paper code, §8).
    "boxed": 'Please solve the problem step by step and put your answer in one "\\boxed{}".',
}


def with_answer_format(question: str, answer_format: str = "none") -> str:
    """``question``, then the instruction of ``answer_format`` on a new line (``none``: unchanged).

    Raises:
        ValueError: unknown ``answer_format`` (the message lists the valid ones).
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer format {answer_format!r}: expected one of {', '.join(ANSWER_FORMATS)}")
    instruction = ANSWER_FORMATS[answer_format]
    return f"{question}\n{instruction}" if instruction else question


def image_message(question: str, answer_format: str = "none") -> list[dict]:
    """One user turn: the image, then the question (paper: f(i, p) and f(b, p)), then the answer
    instruction of ``answer_format`` (:func:`with_answer_format`)."""
    return [{"role": "user", "content": [{"type": "image"},
                                         {"type": "text", "text": with_answer_format(question, answer_format)}]}]


def described_question(description: str, question: str) -> str:
    """The text of the black-image + description condition of Mv2r (paper Eq. 5, authors' layout)."""
    return f"Image Description: {description}\nQuestion: {question}"


def text_message(question: str, answer_format: str = "none") -> list[dict]:
    """One user turn with text only (paper: f(p), Mrea and layer skipping), then the answer
    instruction of ``answer_format``."""
    return [{"role": "user", "content": [{"type": "text", "text": with_answer_format(question, answer_format)}]}]
