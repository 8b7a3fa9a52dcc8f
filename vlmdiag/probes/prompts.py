"""The user-message layouts every probe is asked in (pinned, so scores are comparable between
checkpoints and runs). The organism is trained on exactly these layouts."""

from __future__ import annotations


def image_message(question: str) -> list[dict]:
    """One user turn: the image, then the question (paper: f(i, p) and f(b, p))."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def described_question(description: str, question: str) -> str:
    """The text of the black-image + description condition of Mv2r (paper Eq. 5, authors' layout)."""
    return f"Image Description: {description}\nQuestion: {question}"


def text_message(question: str) -> list[dict]:
    """One user turn with text only (paper: f(p), Mrea and layer skipping)."""
    return [{"role": "user", "content": [{"type": "text", "text": question}]}]
