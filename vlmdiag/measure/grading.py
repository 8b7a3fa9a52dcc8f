"""Rule-based answer extraction and checking, and the task-specific swap "changed" criteria.

What models write (instruction-tuned and R1-style VLMs): reasoning in ``<think>…</think>`` (or a
bare ``…</think>`` when the chat template opened the block), then the answer in ``<answer>…</answer>``,
in ``\\boxed{…}``, after "The answer is" / "Final answer:", as an option letter ("(B)", "B.",
"Answer: B") or the option's text, or bare ("3 apples.", "Yes, there is.").

:func:`final_answer` finds it, in this order, after removing reasoning (closed ``<think>`` blocks,
everything up to an unopened ``</think>``, and an unclosed ``<think>`` to the end: an answer inside
unfinished reasoning is never taken): the last closed ``<answer>…</answer>`` (else an unclosed one,
to the end); in that region, the last ``\\boxed{…}`` (nested braces matched), else the last
"answer is …" / "Final answer: …" phrase; for multiple choice, the chosen letter mapped to its
option text; else, with no tag, the last number; else the text. Unlike the reference
``_extract_answer`` (``notes/reference-implementation.md`` §8.6) nothing is cut off the head of an
extracted answer: ``\\boxed{3.14}`` stays ``3.14``.

Truncation (:func:`grade`): a response that stopped at the token budget (not at EOS) and holds no
explicit answer (a closed ``<answer>`` tag, a ``\\boxed{}``, an answer phrase ended by a period or
a new line, an option letter standing alone) is *truncated*: it is wrong, and counted as
truncated, so a budget too small for a reasoning model shows up as such, not as a low score.

Equivalence (:func:`answers_equivalent`): normalised exact match; yes/no by the answer's first
word; numbers (thousands separators, units, ``%``, ``$`` and trailing periods ignored): integers
exactly, others within 1e-6 absolute or 1e-4 relative (the reference's 1 % relative tolerance
counts 199 as 200; this one does not); then ``math_verify`` (``\\frac{1}{2}`` = ``0.5``, ``x = 3`` = ``3``).

Swap criteria (paper App. D.2.2): OCR text differs; the count differs; the predicted box has
IoU > 0.5 with the source box; a recognition answer flips Yes → No. They, and reading boxes in a
family's coordinate convention, live in :mod:`vlmdiag.measure.swap_criteria` (``swap_changed``,
``parse_box``, ``BoxFrame``, ...), still importable from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence


_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>.*", re.DOTALL | re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_ANSWER_CLOSED = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>(.*)", re.DOTALL | re.IGNORECASE)
# A number: thousands groups ("1,234,567") or plain digits, optional decimals.
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|-?\.\d+")
# What may stand around a number with a unit ("12 cm", "$1,200", "x = 3 m^2", "90^\\circ", "50\\%").
_UNIT_WRAPPER = re.compile(r"\\(?:text|mathrm|mbox)\{([^{}]*)\}|\\[%$,;! ]")
_UNIT_POWER = re.compile(r"\^\{?(?:\\circ|[23])\}?")
_NUMBER_NOT_POWER = re.compile(r"(?<![\^{\w])(?:" + _NUMBER.pattern + ")")
_BEFORE_NUMBER = re.compile(r"[A-Za-z\s']*(?:=\s*)?\$?")
_AFTER_NUMBER = re.compile(r"(?!\s*/)[A-Za-z\s°%²³µ/.,!$]*")
_ANSWER_PHRASE = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is|:|=)\s*:?\s*(.+?)\s*(?:[.?!;]\s|[.?!]?\s*$|\n)", re.IGNORECASE)
_PHRASE_ENDED = re.compile(r"(?:[.?!;]\s|\n)$")
# An option letter standing alone: "B", "(B)", "B.", "B)", "B: 9.6", "[B]".
_LETTER_ALONE = re.compile(r"^[\s*]*[(\[]?([A-H])[)\]]?\**(?:\s*$|\s*[.):]|(?<=[)\]])\s)")
# An option letter named in free text: "option B", "choice (C)", "(D)".
_LETTER_MENTION = re.compile(r"(?i:option|choice)\s*(?:is\s*)?:?\s*\(?([A-H])\)?(?![\w'])|\(([A-H])\)")
_YES_NO = re.compile(r"[\W_]*(yes|no)\b", re.IGNORECASE)
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}
LETTERS = "ABCDEFGH"
#: Where :func:`final_answer` found an answer; the explicit ones count as an answer given even when
#: the response ran into the token budget.
EXPLICIT_SOURCES = frozenset({"tag", "boxed", "phrase", "letter"})


def strip_think(text: str) -> str:
    """``text`` without reasoning: every closed ``<think>…</think>`` block, everything up to the
    last ``</think>`` left without its opening tag (the chat template opened the block, as
    DeepSeek-R1 and Qwen3 templates do), and an unclosed ``<think>`` to the end."""
    text = _THINK_BLOCK.sub("", text)
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    return _THINK_OPEN.sub("", text)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` (or ``\\fbox{…}``) with nested braces, else None
    (also None when that box is never closed)."""
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


def _answer_phrase(text: str) -> tuple[str, bool] | None:
    """The last "answer is …" / "Final answer: …" (markdown bold ignored), under 100 characters,
    and whether it ended (a period, a new line) before the end of ``text``."""
    text = text.replace("**", "").rstrip()
    matches = list(_ANSWER_PHRASE.finditer(text))
    if not matches or len(matches[-1].group(1)) >= 100:
        return None
    match = matches[-1]
    return match.group(1).strip(), match.end() < len(text) or text[-1] in ".?!"


def choice_letter(text: str, n_choices: int = 8) -> str | None:
    """A multiple-choice letter A.. (up to ``n_choices``) chosen in ``text``: the letter standing
    alone at its start ("B", "(B)", "B. 9.6"), else the last "option B" / "(B)" named in it; else None."""
    allowed = LETTERS[:max(1, min(n_choices, 8))]
    alone = _LETTER_ALONE.match(text)
    if alone and alone.group(1) in allowed:
        return alone.group(1)
    named = [m.group(1) or m.group(2) for m in _LETTER_MENTION.finditer(text)]
    named = [letter.upper() for letter in named if letter.upper() in allowed]
    return named[-1] if named else None


@dataclass(frozen=True)
class Answer:
    """An extracted final answer.

    Attributes:
        text: the answer (possibly empty); for multiple choice, the chosen option's text.
        source: where it was found: ``tag`` (a closed ``<answer>``), ``open_tag`` (an unclosed
            one), ``boxed``, ``phrase`` ("The answer is …"; ``open_phrase`` when it runs to the end
            of the response unended), ``letter`` (an option letter standing
            alone), ``mention`` (an option letter named in free text), ``number`` (the last number
            of free text), ``text`` (the whole text), ``none`` (nothing after reasoning).
    """

    text: str
    source: str

    @property
    def explicit(self) -> bool:
        """Whether the response states this answer as its final one (:data:`EXPLICIT_SOURCES`)."""
        return self.source in EXPLICIT_SOURCES


def _named_option(text: str, choices: Sequence[str]) -> str | None:
    """The one option whose text the answer names as a phrase ("It is a dog." with options cat,
    dog, bird), else None (no option named, or several)."""
    words = f" {_words(text)} "
    named = [c for c in choices if _words(c) and f" {_words(c)} " in words]
    return named[0] if len(named) == 1 else None


def _words(text: str) -> str:
    return " ".join(re.findall(r"-?\d+(?:\.\d+)?|[^\W_]+", text.lower()))


def _clean(text: str) -> str:
    return text.strip().strip("*").strip().rstrip(".").strip()


def final_answer(response: str, *, choices: Sequence[str] | None = None) -> Answer:
    """The final answer in a model response, and where it was found (order: module docstring).

    Args:
        response: the decoded response.
        choices: the option texts of a multiple-choice item; a chosen letter is mapped to its text.
    """
    text = strip_think(response).strip()
    closed = _ANSWER_CLOSED.findall(text)
    opened = None if closed else _ANSWER_OPEN.search(text)
    tagged = closed[-1] if closed else opened.group(1) if opened else None
    region = text if tagged is None else tagged.strip()
    boxed = last_boxed(region)
    phrase = _answer_phrase(region) if boxed is None else None
    if boxed is not None:
        candidate, source = boxed, "boxed"
    elif phrase is not None:
        # a phrase running to the very end of the response may have been cut ("the answer is 1|2")
        candidate, source = phrase[0], "phrase" if phrase[1] or closed else "open_phrase"
    elif tagged is not None:
        candidate, source = region, "tag" if closed else "open_tag"
    elif not text:
        return Answer("", "none")
    else:
        candidate, source = text, "text"
    if choices:
        alone = _LETTER_ALONE.match(candidate)
        letter = choice_letter(candidate, len(choices))
        if letter is not None and (alone or source == "text"):
            return Answer(choices[LETTERS.index(letter)], "letter" if alone else "mention")
        named = _named_option(candidate, choices)
        if named is not None:
            return Answer(named, source if source != "text" else "mention")
    elif source == "text":
        numbers = _NUMBER_NOT_POWER.findall(text)
        if numbers:
            return Answer(numbers[-1], "number")
    return Answer(_clean(candidate), source)


def extract_answer(response: str, *, choices: Sequence[str] | None = None) -> str:
    """The text of :func:`final_answer` (possibly empty)."""
    return final_answer(response, choices=choices).text


def _normalise(text: str) -> str:
    text = text.strip().strip("$").replace("\\!", "").replace("\\,", "")
    text = re.sub(r"\\(?:text|mathrm|textbf)\{(.*?)\}", r"\1", text)
    return re.sub(r"\s+", "", text).lower().rstrip(".")


_FRACTION = re.compile(r"(-?)(?:\\[dt]?frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}|(-?\d+(?:\.\d+)?)/(-?\d+(?:\.\d+)?))")


def _as_number(text: str) -> float | None:
    """The number a plain answer is: ``1,000``, ``50%``, ``-3.5``, ``\\frac{3}{4}``, ``3/4``; else None."""
    cleaned = re.sub(r"^\\?\$", "", _normalise(text).replace(",", "").replace("\\%", "").replace("%", ""))
    try:
        return float(cleaned)
    except ValueError:
        pass
    fraction = _FRACTION.fullmatch(cleaned)  # the common case of math_verify, without sympy
    if fraction:
        sign, *parts = fraction.groups()
        p, q = (float(x) for x in parts if x is not None)
        return (-1 if sign else 1) * p / q if q else None
    return None


def _number_with_unit(text: str) -> float | None:
    """The number of an answer made of one number with words or a unit around it ("12 cm",
    "$1,200", "x = 3", "There are 3 apples"), else None: ``3/4``, ``2\\sqrt{3}`` or ``\\frac{1}{2}``
    are not (math_verify reads those)."""
    text = _UNIT_WRAPPER.sub(lambda m: m.group(1) or " ", text)
    numbers = list(_NUMBER_NOT_POWER.finditer(text))
    if len(numbers) != 1:
        return None
    number = numbers[0]
    after = _UNIT_POWER.sub("", text[number.end():])
    if not (_BEFORE_NUMBER.fullmatch(text[:number.start()]) and _AFTER_NUMBER.fullmatch(after)):
        return None
    return float(number.group().replace(",", ""))


# Prose (three words in a row, LaTeX commands aside) is not mathematics: math_verify would spend
# up to its timeout parsing it.
_PROSE = re.compile(r"(?<!\\)\b[A-Za-z]{2,}\s+[A-Za-z]{2,}\s+[A-Za-z]{2,}")
# Without a digit, operator or LaTeX command there is nothing for math_verify to read ("yes" vs "5").
_MATH = re.compile(r"[\d\\^_/+*=<>()\[\]{}-]")


def _math_verify(pred: str, gold: str) -> bool:
    if len(pred) > 100 or _PROSE.search(pred) or not (_MATH.search(pred) and _MATH.search(gold)):
        return False
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

    Normalised exact match (case, spaces, ``$``, ``\\text{}``); for a yes/no gold, the answer's
    first word ("Yes, there is." = ``yes``); integers exactly, other numbers within 1e-6 absolute
    or 1e-4 relative, an answer holding one number with a unit counting as that number
    ("12 cm" = ``12``); then
    ``math_verify`` (``\\frac{1}{2}`` = ``0.5``). Empty answers are never equivalent.
    """
    if not pred.strip() or not gold.strip():
        return False
    if _normalise(pred) == _normalise(gold):
        return True
    if _normalise(gold) in ("yes", "no"):
        match = _YES_NO.match(pred)
        return bool(match) and match.group(1).lower() == _normalise(gold)
    g = _as_number(gold)
    if g is not None:
        p = _as_number(pred)
        p = _number_with_unit(pred) if p is None else p
        if p is not None:
            if p.is_integer() and g.is_integer():
                return p == g  # the relative tolerance would make 10001 equal 10000
            return abs(p - g) < 1e-6 or (g != 0 and abs(p - g) / abs(g) < 1e-4)
    return _math_verify(pred, gold)


@dataclass(frozen=True)
class Graded:
    """One graded response.

    Attributes:
        answer: the extracted answer (:func:`final_answer`).
        source: where it was found (:attr:`Answer.source`).
        correct: equivalent to the gold answer, and not truncated.
        truncated: the response stopped at the token budget before stating an answer.
    """

    answer: str
    source: str
    correct: bool
    truncated: bool

    def as_dict(self) -> dict:
        return {"answer": self.answer, "source": self.source, "correct": self.correct, "truncated": self.truncated}


def gold_text(gold: str, choices: Sequence[str] | None) -> str:
    """The gold answer as text: for multiple choice, a gold given as a letter becomes its option."""
    letter = gold.strip().upper()
    if choices and len(letter) == 1 and letter in LETTERS[:len(choices)]:
        return choices[LETTERS.index(letter)]
    return gold


def _budget_answer(response: str, hit_budget: bool, choices: Sequence[str] | None) -> Answer:
    """:func:`final_answer`; but when the response ran into the budget with an answer phrase at its
    end, that phrase is an answer only if a line or sentence end closed it ("… the answer is 1" may
    have been cut from "12"; "Final answer: 0\n" was not). An unended one is no answer, and an
    explicit answer stated before it is (a model that answered and ran on)."""
    found = final_answer(response, choices=choices)
    if not (hit_budget and found.source == "open_phrase"):
        return found
    text = response.replace("**", "")
    phrases = list(_ANSWER_PHRASE.finditer(text))
    if not phrases:
        return found
    if _PHRASE_ENDED.search(phrases[-1].group()) and not _ANSWER_OPEN.search(strip_think(text)):
        return Answer(found.text, "phrase")
    earlier = _budget_answer(text[:phrases[-1].start()], hit_budget, choices)
    return earlier if earlier.explicit else found


def grade(response: str, gold: str, *, choices: Sequence[str] | None = None, hit_budget: bool = False) -> Graded:
    """Extract the answer from ``response`` and compare it with ``gold``.

    Args:
        response: the decoded response.
        gold: the gold answer (for multiple choice, its letter or its option text).
        choices: the option texts of a multiple-choice item.
        hit_budget: the generation stopped at ``max_new_tokens``, not at an end-of-sequence token
            (:attr:`vlmdiag.runtime.generate.Generation.hit_budget`).

    Returns:
        :class:`Graded`; ``truncated`` when ``hit_budget`` and the response holds no explicit
        answer (module docstring), in which case ``correct`` is False.
    """
    found = _budget_answer(response, hit_budget, choices)
    truncated = hit_budget and not found.explicit
    gold = gold_text(gold, choices)
    if choices and found.text in choices and gold in choices:
        correct = not truncated and found.text == gold  # an option chosen: right or wrong as a whole
    else:
        correct = not truncated and answers_equivalent(found.text, gold)
    return Graded(found.text, found.source, correct, truncated)


def is_truncated(response: str, hit_budget: bool, *, choices: Sequence[str] | None = None) -> bool:
    """Whether a response ran out of the token budget (``hit_budget``) before stating an explicit
    answer (:attr:`Answer.explicit`): cut off inside ``<think>``, inside an unclosed ``<answer>``,
    or in free text."""
    return hit_budget and not _budget_answer(response, hit_budget, choices).explicit


def is_correct(response: str, gold: str, *, choices: Sequence[str] | None = None, hit_budget: bool = False) -> bool:
    """``grade(...).correct``: the extracted answer equals ``gold`` and the response was not cut
    off before stating it. For multiple choice, a gold given as a letter is mapped to its option text."""
    return grade(response, gold, choices=choices, hit_budget=hit_budget).correct


# The swap criteria live in vlmdiag.measure.swap_criteria; these names stay importable from here.
_MOVED = ("BOX_COORDINATES", "BoxFrame", "iou", "parse_box", "parse_count", "swap_changed", "yes_no")


def __getattr__(name: str):
    if name in _MOVED:
        from vlmdiag.measure import swap_criteria

        return getattr(swap_criteria, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
