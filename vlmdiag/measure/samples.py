"""Per-sample records (``--log-samples DIR``, as lmms-eval's ``--log_samples``): every prompt,
response, extracted answer and grade, one JSON Lines file per model state, so a user can see why a
score moved.

Files: ``DIR/<state>.jsonl`` (``<state>`` is the state's label, e.g. ``IN``, ``RL``,
``IN-RL-RL``, with any character outside ``[A-Za-z0-9._-]`` replaced by ``-``) for the ability
answers, and ``DIR/IN.swap.jsonl`` for the visual-token swap sweep on the base checkpoint (one record
per pair and swapped layer setting: prompt, response before and after the swap, ``changed``). Lines are
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

    def path(self, state: str, kind: str | None = None) -> Path:
        """Where the records of ``state`` go: ``<state>.jsonl`` (ability answers), or
        ``<state>.<kind>.jsonl`` for another kind of record (``swap``)."""
        name = state_file_name(state)
        return self.folder / (name if kind is None else f"{name[:-len('.jsonl')]}.{state_file_name(kind)}")

    def write(self, state: str, records: Iterable[dict], *, kind: str | None = None) -> Path:
        """Append ``records`` (JSON-ready dicts; ``state`` is added) to the state's file (of ``kind``,
        :meth:`path`).

        Raises:
            UnsafeOutputError: the file resolves into a checkpoint or is not a regular file.
        """
        target = writable_target(self.path(state, kind))
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

    def log_swaps(self, state: str, pairs: Sequence, results: Sequence, *, answer_format: str = "none",
                  measurement: str | None = "swap", fingerprint: str | None = None,
                  claim: str | None = None) -> Path:
        """Records of a visual-token swap sweep (:func:`vlmdiag.measure.swap.swap_pairs`, paper
        §3.1.1) in ``DIR/<state>.swap.jsonl``: one per pair and swapped layer setting, with the
        prompt text (``<image>`` where the image goes, the answer instruction of ``answer_format``
        after the question), the image size, the response before the swap (the target image
        alone) and after it (the source's visual K/V from layer ``layer`` on, ``mode="from"``, or
        at it alone, ``"only"``), the answers extracted from both as the swap criterion reads them,
        the source image's own response, the pair's gold answers or boxes, and ``changed`` as the
        criterion (:func:`vlmdiag.measure.swap_criteria.swap_changed`) counted it.

        Args:
            pairs: the :class:`~vlmdiag.probes.types.SwapPair` swapped.
            results: their :class:`~vlmdiag.measure.swap.PairSwapResult`, matched by ``pair_id``.
            fingerprint: the swapped checkpoint's identity, written with each record.

        Raises:
            ValueError: a result's pair is not among ``pairs``.
            UnsafeOutputError: the file resolves into a checkpoint or is not a regular file.
        """
        from vlmdiag.measure.grading import extract_answer
        from vlmdiag.runtime.generate import image_prompt

        by_id = {pair.id: pair for pair in pairs}
        records = []
        for result in results:
            pair = by_id.get(result.pair_id)
            if pair is None:
                raise ValueError(f"log_swaps: swap result {result.pair_id!r} has no pair among the {len(pairs)} given")
            prompt = _prompt_text(image_prompt(pair.prompt, pair.target_image, answer_format).messages)
            run = result.run
            before = extract_answer(run.target_answer)
            for layer, after, changed in zip(run.layers.tolist(), run.swapped, result.changed.tolist()):
                records.append({
                    "claim": claim, **({"measurement": measurement} if measurement else {}),
                    **({"fingerprint": fingerprint} if fingerprint else {}),
                    "pair_id": pair.id, "task": pair.task, "mode": run.mode, "layer": int(layer),
                    "prompt": prompt, "image": list(pair.target_image.size), "answer_format": answer_format,
                    "response_before": run.target_answer, "response_after": after,
                    "extracted_before": before, "extracted_after": extract_answer(after),
                    "source_response": run.source_answer,
                    "target_answer": pair.target_answer, "source_answer": pair.source_answer,
                    "target_bbox": list(pair.target_bbox) if pair.target_bbox else None,
                    "source_bbox": list(pair.source_bbox) if pair.source_bbox else None,
                    "changed": bool(changed)})
        return self.write(state, records, kind="swap")
