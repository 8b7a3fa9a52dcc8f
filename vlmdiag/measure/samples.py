"""Per-sample records (``--log-samples DIR``, as lmms-eval's ``--log_samples``): every prompt,
response, extracted answer and grade, one JSON Lines file per model state, so a user can see why a
score moved.

Files: ``DIR/<state>.jsonl`` (``<state>`` is the state's label, e.g. ``IN``, ``RL``,
``IN-RL-RL``, with any character outside ``[A-Za-z0-9._-]`` replaced by ``-``). Lines are
appended under a file lock, each in one ``write`` of a complete line, so pytest-xdist workers
writing the same state interleave whole records, never parts. ``DIR`` is checked up front: never
inside a checkpoint folder (:func:`vlmdiag.paths.check_output`), and every file goes through
:func:`vlmdiag.paths.writable_target`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from filelock import FileLock

from vlmdiag.paths import check_output, writable_target


def state_file_name(state: str) -> str:
    """The file name of a model state's records (``IN:RL:RL`` → ``IN-RL-RL.jsonl``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", state).strip("-.") or "state"
    return f"{cleaned[:120]}.jsonl"


def _prompt_text(messages: Sequence[dict]) -> str:
    """The user text of chat messages, with ``<image>`` where an image goes."""
    parts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
            continue
        for piece in content or ():
            parts.append("<image>" if piece.get("type") == "image" else str(piece.get("text", "")))
    return "".join(parts)


class SampleLog:
    """Writes per-sample records under ``folder``.

    Args:
        folder: the ``--log-samples`` folder (created when missing).
        checkpoints: the run's checkpoint folders (never written into).

    Raises:
        UnsafeOutputError: ``folder`` lies inside a checkpoint, or exists and is not a folder.
        OSError: ``folder`` cannot be created.
    """

    def __init__(self, folder: str | os.PathLike, *, checkpoints: Iterable[str | os.PathLike] = ()):
        check_output(folder, "--log-samples", list(checkpoints), folder=True)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, state: str) -> Path:
        """Where the records of ``state`` go."""
        return self.folder / state_file_name(state)

    def write(self, state: str, records: Iterable[dict]) -> Path:
        """Append ``records`` (JSON-ready dicts; ``state`` is added) to the state's file.

        Raises:
            UnsafeOutputError: the file resolves into a checkpoint or is not a regular file.
        """
        target = writable_target(self.path(state))
        lines = b"".join(json.dumps({"state": state, **r}, ensure_ascii=False, default=str).encode() + b"\n"
                         for r in records)
        if not lines:
            return target
        with FileLock(str(target) + ".lock"):
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                view = memoryview(lines)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        return target

    def log_abilities(self, state: str, items: Sequence, outcomes: Sequence, *, answer_format: str = "none",
                      claim: str | None = None, measurement: str | None = None) -> Path:
        """Records of :func:`vlmdiag.measure.abilities.run_abilities` outcomes: one per item and
        condition, with the prompt text, response, extracted answer (:func:`vlmdiag.measure.grading.grade`),
        gold answer, ``correct`` as scored and ``truncated`` (and ``measurement``, the runner's
        measurement that asked, e.g. ``abilities`` or ``transplant``, when given)."""
        from vlmdiag.measure.abilities import build_prompts
        from vlmdiag.measure.grading import final_answer

        by_id = {item.id: item for item in items}
        records = []
        for outcome in outcomes:
            item = by_id[outcome.item_id]
            prompts = {p.condition: p for p in build_prompts(item, answer_format)[0]}
            for condition, response in outcome.responses.items():
                prompt = prompts.get(condition)
                found = final_answer(response, choices=item.choices)
                records.append({
                    "claim": claim, **({"measurement": measurement} if measurement else {}), "item_id": item.id, "kind": item.kind, "condition": condition,
                    "prompt": _prompt_text(prompt.messages) if prompt else None,
                    "image": None if prompt is None or prompt.image is None else list(prompt.image.size),
                    "response": response, "extracted": found.text, "extracted_from": found.source,
                    "gold": item.answer, "choices": list(item.choices) if item.choices else None,
                    "correct": outcome.correct.get(condition), "truncated": condition in outcome.truncated})
        return self.write(state, records)

    def log_swaps(self, state: str, records: Iterable[dict], *, claim: str | None = None) -> Path:
        """Swap-probe records: each dict should hold ``pair_id``, ``task``, ``layer``, ``prompt``,
        ``response`` (original / swapped) and ``changed``."""
        return self.write(state, ({"claim": claim, **r} for r in records))
