"""Fine-grained abilities Mvis, Mv2r, Mrea (paper §2.2, Table 1, App. C; Eqs. 4–6), their transition
counts, and paired comparisons between stages or splices (SPEC §2, §4).

Definitions (N = number of items of the kind; the denominator is always N):

* Mvis = (1/N) Σ 1[f(image) = y ∧ f(black) ≠ y] over ``vqa`` items (Eq. 4) = n_TF / N;
* Mv2r = (1/N) Σ 1[f(image) = y ∧ f(black + description) = y] over ``math_vqa`` items (Eq. 5) = n_TT / N;
* Mrea = (1/N) Σ 1[f(text) = y] over ``text_math`` items (Eq. 6).

TT/TF/FT/FF count the items right/wrong under condition A (the image) and B (the black image, or
the black image + description), as in the authors' ``compute_transition_stats``.

The scoring is pure and lives in :mod:`vlmdiag.measure.ability_scoring` (per-item correctness
in, scores, intervals and tests out; re-exported here). The runner (:func:`run_abilities`) asks a
``predict`` callable for every (item, condition) prompt, in the pinned layouts of
:mod:`vlmdiag.probes.prompts`, grades each answer with a ``grade`` callable and returns the
per-item correctness; answers can be cached under :func:`answer_key`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field

from PIL import Image

from vlmdiag.errors import ProbeError
from vlmdiag.probes.prompts import described_question, image_message, text_message
from vlmdiag.probes.types import AbilityItem
from vlmdiag.measure.ability_scoring import (  # noqa: F401  (re-exported: the public names stay here)
    CONDITIONS, KIND_OF_METRIC, METRIC_OF_KIND, AbilityScore, Condition, ItemOutcome, Metric, SkippedAbility,
    StageComparison, Transitions, compare_stages, compare_to_reference, score_abilities, score_mrea, score_mv2r,
    score_mvis, transitions)

Predict = Callable[[list[list[dict]], list["Image.Image | None"]], list["str | Response"]]
Grade = Callable[..., bool]

__all__ = [
    "CONDITIONS", "METRIC_OF_KIND", "Transitions", "AbilityScore", "SkippedAbility", "StageComparison",
    "ItemOutcome", "ConditionPrompt", "Response", "transitions", "score_mvis", "score_mv2r", "score_mrea", "score_abilities",
    "compare_stages", "compare_to_reference", "build_prompts", "answer_key", "run_abilities", "default_grade", "make_predict",
]


# --------------------------------------------------------------------------- prompts and runner


@dataclass(frozen=True)
class ConditionPrompt:
    """One (item, condition) prompt (what :func:`build_prompts` makes; the model reads it as a
    :class:`vlmdiag.runtime.generate.Prompt`): pinned chat messages and at most one image."""

    item_id: str
    condition: Condition
    messages: list = field(compare=False)
    image: Image.Image | None = field(default=None, compare=False)


def _black(image: Image.Image) -> Image.Image:
    return Image.new("RGB", image.size, (0, 0, 0))


def build_prompts(item: AbilityItem, answer_format: str = "none") -> tuple[list[ConditionPrompt], dict[str, str]]:
    """The prompts of one item under each condition of its kind (paper App. C; the authors'
    ``transferability_test.py`` input types):

    * ``image``: the image, then the question;
    * ``black``: an RGB (0, 0, 0) image of the same size, then the question;
    * ``black_description``: the black image, then ``described_question(description, question)``;
    * ``text``: the question only.

    Every question is followed by the answer instruction of ``answer_format``
    (:data:`vlmdiag.probes.prompts.ANSWER_FORMATS`; ``none``: no instruction, the organism's layout).

    Returns:
        (prompts, missing): ``missing`` maps a condition that cannot be asked to the reason.

    Raises:
        ProbeError: a ``vqa``/``math_vqa`` item without an image, or an unknown kind.
        ValueError: unknown ``answer_format``.
    """
    if item.kind not in CONDITIONS:
        raise ProbeError(f"item {item.id!r}: unknown kind {item.kind!r}; expected vqa, math_vqa or text_math")
    if item.kind != "text_math" and item.image is None:
        raise ProbeError(f"item {item.id!r}: a {item.kind} item needs an image")
    prompts, missing = [], {}
    for condition in CONDITIONS[item.kind]:
        if condition == "image":
            prompts.append(ConditionPrompt(item.id, condition, image_message(item.question, answer_format),
                                  item.image.convert("RGB")))
        elif condition == "black":
            prompts.append(ConditionPrompt(item.id, condition, image_message(item.question, answer_format),
                                           _black(item.image)))
        elif condition == "black_description":
            if not item.description:
                missing[condition] = "Mv2r skipped: no image description given (pass a descriptions file)"
                continue
            prompts.append(ConditionPrompt(item.id, condition,
                                  image_message(described_question(item.description, item.question), answer_format),
                                  _black(item.image)))
        else:
            prompts.append(ConditionPrompt(item.id, condition, text_message(item.question, answer_format), None))
    return prompts, missing


def _image_digest(image: Image.Image | None) -> str | None:
    if image is None:
        return None
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()[:16]


def answer_key(fingerprint: str, probe_id: str, condition: str, messages: Sequence[Mapping],
               decoding: Mapping, image: Image.Image | None = None) -> str:
    """A cache key for one answer: sha256 (hex) of the checkpoint fingerprint, probe id,
    condition, exact prompt messages, decoding settings and (optionally) the image pixels.

    Any change to one of these changes the key, so a cache keyed by it never serves an answer
    from another checkpoint, prompt layout or decoding setting.
    """
    payload = json.dumps({"fingerprint": fingerprint, "probe": probe_id, "condition": condition,
                          "messages": list(messages), "decoding": dict(decoding),
                          "image": _image_digest(image)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Response:
    """A model's response and whether it ran out of the token budget (not stopped at EOS);
    ``predict`` may return these instead of plain strings (plain strings: stopped at EOS)."""

    text: str
    hit_budget: bool = False


def _as_response(value) -> Response:
    return value if isinstance(value, Response) else Response(str(value))


def default_grade(response: str, answer: str, *, choices: Sequence[str] | None = None) -> bool:
    """The rule-based grader of :mod:`vlmdiag.measure.grading` (``<think>`` stripped, ``<answer>``,
    ``\\boxed{}``, multiple-choice letters, math-verify)."""
    from vlmdiag.measure.grading import is_correct

    return is_correct(response, answer, choices=choices)


def _accepts_choices(grade: Grade) -> bool:
    try:
        parameters = inspect.signature(grade).parameters
    except (TypeError, ValueError):
        return False
    return "choices" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def run_abilities(items: Sequence[AbilityItem], predict: Predict, grade: Grade | None = None, *,
                  batch_size: int = 32, cache: MutableMapping[str, str | Response] | None = None,
                  fingerprint: str | None = None, decoding: Mapping | None = None,
                  answer_format: str = "none",
                  progress: Callable[[int, int], None] | None = None) -> list[ItemOutcome]:
    """Ask every item under each condition of its kind and grade the answers.

    Args:
        items: probe items (any mix of kinds).
        predict: ``predict(messages_batch, images_batch) -> responses``; one response (a string,
            or a :class:`Response` saying whether it hit the token budget) per prompt, in order.
            Image and text-only prompts are never mixed in one call.
        grade: ``grade(response, answer) -> bool``; called with ``choices=`` too when it accepts
            it. Default :func:`default_grade`. A response that hit the budget before stating an
            answer is truncated (:func:`vlmdiag.measure.grading.grade`): wrong, whatever ``grade``
            says, and listed in ``ItemOutcome.truncated``.
        batch_size: prompts per ``predict`` call.
        cache: optional mapping :func:`answer_key` -> response; answers found there are not
            asked again, new ones are stored.
        fingerprint: the checkpoint fingerprint (required with ``cache``).
        decoding: the decoding settings that ``predict`` uses (part of the cache key).
        answer_format: the answer instruction appended to every question (:func:`build_prompts`).
        progress: ``progress(done, total)`` after each ``predict`` call: prompts answered so far
            (cached answers count as done from the start) out of all prompts.

    Returns:
        One :class:`ItemOutcome` per item, in order.

    Raises:
        ProbeError: a malformed item (see :func:`build_prompts`), repeated item ids, or
            ``predict`` returned a wrong number of responses.
        ValueError: ``cache`` without ``fingerprint``, or ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"run_abilities: batch_size={batch_size} must be at least 1")
    if cache is not None and not fingerprint:
        raise ValueError("run_abilities: a cache needs the checkpoint fingerprint (fingerprint=...)")
    seen: set[str] = set()
    duplicates = sorted({item.id for item in items if item.id in seen or seen.add(item.id)})
    if duplicates:
        raise ProbeError(f"run_abilities: item ids must be unique; repeated: {duplicates[:5]}")
    grade = grade or default_grade
    with_choices = _accepts_choices(grade)
    decoding = dict(decoding or {})
    prompts: list[ConditionPrompt] = []
    missing: dict[str, dict[str, str]] = {}
    for item in items:
        item_prompts, item_missing = build_prompts(item, answer_format)
        prompts += item_prompts
        missing[item.id] = item_missing
    responses: dict[tuple[str, str], Response] = {}
    keys: dict[tuple[str, str], str] = {}
    todo: list[ConditionPrompt] = []
    for prompt in prompts:
        ident = (prompt.item_id, prompt.condition)
        if cache is not None:
            keys[ident] = answer_key(fingerprint, prompt.item_id, prompt.condition, prompt.messages,
                                     decoding, prompt.image)
            if keys[ident] in cache:
                responses[ident] = _as_response(cache[keys[ident]])
                continue
        todo.append(prompt)
    done, total = len(prompts) - len(todo), len(prompts)
    if progress is not None:
        progress(done, total)
    for has_image in (True, False):
        group = [p for p in todo if (p.image is not None) == has_image]
        for start in range(0, len(group), batch_size):
            chunk = group[start:start + batch_size]
            answers = list(predict([p.messages for p in chunk], [p.image for p in chunk]))
            if len(answers) != len(chunk):
                raise ProbeError(f"predict returned {len(answers)} responses for {len(chunk)} prompts")
            for prompt, answer in zip(chunk, answers):
                ident = (prompt.item_id, prompt.condition)
                responses[ident] = _as_response(answer)
                if cache is not None:
                    cache[keys[ident]] = responses[ident]
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    from vlmdiag.measure.grading import is_truncated

    outcomes = []
    for item in items:
        correct, texts, truncated = {}, {}, []
        for condition in CONDITIONS[item.kind]:
            ident = (item.id, condition)
            if ident not in responses:
                continue
            response = responses[ident]
            texts[condition] = response.text
            if is_truncated(response.text, response.hit_budget, choices=item.choices):
                truncated.append(condition)
                correct[condition] = False
            elif with_choices:
                correct[condition] = bool(grade(response.text, item.answer, choices=item.choices))
            else:
                correct[condition] = bool(grade(response.text, item.answer))
        outcomes.append(ItemOutcome(item.id, item.kind, correct, texts, missing[item.id], tuple(truncated)))
    return outcomes


def greedy_decoding(max_new_tokens: int) -> dict:
    """The decoding settings of :func:`make_predict` (greedy), as passed to :func:`run_abilities`."""
    return {"do_sample": False, "max_new_tokens": max_new_tokens, "num_beams": 1}


def make_predict(loaded, *, max_new_tokens: int = 128, batch_size: int = 32) -> tuple[Predict, dict]:
    """A ``predict`` callable over :func:`vlmdiag.runtime.generate.generate` (greedy) returning
    :class:`Response` values (whether each hit ``max_new_tokens``), and the decoding settings to
    pass to :func:`run_abilities` as ``decoding``."""
    from vlmdiag.runtime.generate import Prompt, generate

    def predict(messages_batch, images_batch):
        prompts = [Prompt(m, i) for m, i in zip(messages_batch, images_batch)]
        return [Response(g.text, g.hit_budget)
                for g in generate(loaded, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)]

    return predict, greedy_decoding(max_new_tokens)
