"""Loader for the paper's paired swap probes (``dataset/vision_functionality_dataset`` of the
authors' repository; ``notes/reference-implementation.md`` §2).

Layout: ``<root>/<task>/data.jsonl`` with one JSON object per line, keys ``id``, ``task``,
``target_image``, ``source_image`` (paths relative to the task folder), ``prompt`` and ``meta``.
Answers come from ``meta``: ``target_answer``/``source_answer`` (counting, recognition),
``target_text``/``source_text`` (ocr), ``target_bbox_xyxy``/``source_bbox_xyxy`` (grounding).
The literal ``<image>`` the counting prompts start with is removed: the chat template places the
image, and for LLaVA-style tokenizers ``<image>`` *is* the placeholder and would add a second image.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image

from vlmdiag.errors import ProbeError
from vlmdiag.probes.records import jsonl_lines
from vlmdiag.probes.types import SwapPair

TASKS = ("counting", "grounding", "ocr", "recognition")
_REQUIRED = ("id", "task", "target_image", "source_image", "prompt")


@dataclass(frozen=True)
class LoadedPairs:
    """The pairs that loaded, and those skipped because an image could not be read.

    Attributes:
        pairs: the usable pairs, in file order, task by task.
        skipped: number of pairs skipped (missing or undecodable image).
        skipped_reasons: one ``"<file>:<line>: <reason>"`` per skipped pair.
    """

    pairs: tuple[SwapPair, ...]
    skipped: int
    skipped_reasons: tuple[str, ...]


def _open_image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image.convert("RGB")


def _box(value, where: str):
    if value is None:
        return None
    if not (isinstance(value, (list, tuple)) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value)):
        raise ProbeError(f"{where}: a bounding box must be 4 numbers x1,y1,x2,y2, got {value!r}")
    return tuple(float(v) for v in value)


def parse_line(line: str, *, where: str, folder: Path) -> dict:
    """Validate one JSONL line; returns the record with image paths resolved.

    Raises:
        ProbeError: not JSON, not an object, a required key missing or of the wrong type, unknown
            task (the message starts with ``where``, i.e. ``file:line``).
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ProbeError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
    except RecursionError:
        raise ProbeError(f"{where}: not valid JSON (nested too deeply)") from None
    if not isinstance(record, dict):
        raise ProbeError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise ProbeError(f"{where}: missing keys {missing}; each line needs {list(_REQUIRED)}")
    for key in _REQUIRED:
        if not isinstance(record[key], str):
            raise ProbeError(f"{where}: {key!r} must be a string, got {type(record[key]).__name__}")
    if record["task"] not in TASKS:
        raise ProbeError(f"{where}: unknown task {record['task']!r}; expected one of {list(TASKS)}")
    meta = record.get("meta", {})
    if not isinstance(meta, dict):
        raise ProbeError(f"{where}: 'meta' must be an object, got {type(meta).__name__}")
    record["meta"] = meta
    record["target_path"] = folder / record["target_image"]
    record["source_path"] = folder / record["source_image"]
    return record


def _answers(record: dict, where: str) -> dict:
    meta, task = record["meta"], record["task"]
    if task == "ocr":
        return dict(target_answer=meta.get("target_text"), source_answer=meta.get("source_text"))
    if task == "grounding":
        source = _box(meta.get("source_bbox_xyxy"), where)
        if source is None:
            raise ProbeError(f"{where}: a grounding pair needs meta.source_bbox_xyxy")
        return dict(target_bbox=_box(meta.get("target_bbox_xyxy"), where), source_bbox=source)
    out = {}
    for key in ("target_answer", "source_answer"):
        value = meta.get(key)
        out[key] = None if value is None else str(value)
    return out


def load_vision_functionality(root: str | os.PathLike, *, tasks: Sequence[str] | None = None,
                              limit: int | None = None) -> LoadedPairs:
    """Read the paired swap probes.

    Args:
        root: the folder holding one sub-folder per task.
        tasks: tasks to read (default all four present).
        limit: at most this many lines per task (the reference code uses the first 50).

    Returns:
        :class:`LoadedPairs`; pairs with a missing or undecodable image are skipped and counted.

    Raises:
        ProbeError: ``root`` or a requested task's ``data.jsonl`` is missing; a malformed line
            (the message names the file and the 1-based line number).
    """
    root = Path(root)
    if not root.is_dir():
        raise ProbeError(f"{root}: vision-functionality probe folder not found")
    tasks = list(tasks) if tasks is not None else [t for t in TASKS if (root / t / "data.jsonl").is_file()]
    pairs, reasons = [], []
    for task in tasks:
        if task not in TASKS:
            raise ProbeError(f"{root}: unknown task {task!r}; expected one of {list(TASKS)}")
        path = root / task / "data.jsonl"
        if not path.is_file():
            raise ProbeError(f"{path}: not found")
        used = 0
        for number, line in jsonl_lines(path):
            if not line.strip():
                continue
            if limit is not None and used >= limit:
                break
            where = f"{path}:{number}"
            record = parse_line(line, where=where, folder=path.parent)
            answers = _answers(record, where)
            used += 1
            try:
                target = _open_image(record["target_path"])
                source = _open_image(record["source_path"])
            except (OSError, ValueError, Image.DecompressionBombError) as error:
                reasons.append(f"{where}: image not readable ({type(error).__name__}: {error})")
                continue
            prompt = record["prompt"].replace("<image>", "").strip()
            pairs.append(SwapPair(id=record["id"], task=record["task"], target_image=target,
                                  source_image=source, prompt=prompt,
                                  meta=dict(record["meta"], file=str(path), line=number), **answers))
    return LoadedPairs(pairs=tuple(pairs), skipped=len(reasons), skipped_reasons=tuple(reasons))
