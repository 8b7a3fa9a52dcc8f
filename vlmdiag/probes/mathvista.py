"""MathVista testmini from a local copy, as Mvis and Mv2r probes (paper App. C; the authors'
``transferability_test.py`` ``v1`` split, ``notes/reference-implementation.md`` §8.2).

Layouts read (whatever the user has):

* the GitHub release ``testmini.json``: an object of pid -> record, images under ``images/``;
* JSON Lines or a JSON list of the same records;
* the Hugging Face parquet export (``testmini-*.parquet``) with ``decoded_image`` bytes.

Record fields used: ``pid``, ``question``, ``answer``, ``metadata.category`` (``general-vqa`` ->
``vqa`` items for Mvis, ``math-targeted-vqa`` -> ``math_vqa`` items for Mv2r), ``image`` (a path
relative to the file or to ``image_root``) or ``decoded_image``, and optionally ``choices``,
``question_type``, ``answer_type``, ``query``, ``unit``, ``precision``.

The question is the raw ``question`` plus, for multiple choice, ``"\\n\\nChoices:\\nA. …"`` (the
authors' layout; ``use_query=True`` asks the pre-formatted ``query`` instead).

Mv2r needs an exact text description of each image; MathVista has none. Pass a descriptions file
(JSON Lines of ``{"pid", "description"}``); without one the ``math_vqa`` items are still returned
(Mvis-style image questions work) and ``ProbeSet.skipped["Mv2r"]`` says why Mv2r cannot be scored.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from vlmdiag.errors import ProbeError
from vlmdiag.probes.records import ProbeSet, Record, load_descriptions, read_records, require, sample
from vlmdiag.probes.types import AbilityItem

CATEGORY_KIND = {"general-vqa": "vqa", "math-targeted-vqa": "math_vqa"}
NO_DESCRIPTIONS = ("Mv2r skipped: no descriptions file given; Mv2r asks each math-targeted-vqa item "
                   "with a black image plus an exact text description of its image (paper Eq. 5). "
                   "Pass a JSON Lines file of {\"pid\": ..., \"description\": ...}")


def _metadata(record: Record) -> dict:
    meta = record.data.get("metadata")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError as error:
            raise ProbeError(f"{record.where}: metadata is not a JSON object ({error})") from error
    if not isinstance(meta, dict) or not isinstance(meta.get("category"), str) or not meta["category"]:
        raise ProbeError(f"{record.where}: missing field metadata.category "
                         "(general-vqa or math-targeted-vqa)")
    return meta


def _question(record: Record, use_query: bool) -> str:
    data = record.data
    if use_query:
        require(record, "query")
        return str(data["query"])
    question = str(data["question"])
    choices = data.get("choices")
    if choices is not None and not isinstance(choices, list):
        raise ProbeError(f"{record.where}: choices must be a list, got {type(choices).__name__}")
    if data.get("question_type") == "multi_choice" or choices:
        if not choices:
            raise ProbeError(f"{record.where}: a multi_choice question without choices")
        question += "\n\nChoices:\n" + "\n".join(f"{'ABCDEFGH'[i]}. {c}" for i, c in enumerate(choices[:8]))
    return question


class _Undecodable(ProbeError):
    """The image exists but cannot be decoded: the item is skipped and counted, not fatal."""


def _image(record: Record, base: Path) -> Image.Image:
    data = record.data
    decoded = data.get("decoded_image")
    if isinstance(decoded, dict) and decoded.get("bytes"):
        if not isinstance(decoded["bytes"], (bytes, bytearray)):
            raise ProbeError(f"{record.where}: decoded_image.bytes must be bytes, got "
                             f"{type(decoded['bytes']).__name__}")
        source = io.BytesIO(decoded["bytes"])
    elif isinstance(decoded, (bytes, bytearray)):
        source = io.BytesIO(decoded)
    else:
        name = data.get("image") or (decoded.get("path") if isinstance(decoded, dict) else None)
        if not name:
            raise ProbeError(f"{record.where}: no image (neither image nor decoded_image)")
        source = base / str(name)
        if not source.is_file():
            raise ProbeError(f"{record.where}: image {source} does not exist (set image_root to the "
                             "folder that holds MathVista's images/)")
    try:
        with Image.open(source) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise _Undecodable(f"{record.where}: image not decodable ({type(error).__name__}: {error})") from error


def load_mathvista(path: str | Path, *, descriptions: str | Path | dict[str, str] | None = None,
                   image_root: str | Path | None = None, n: int | None = 100, seed: int = 123,
                   use_query: bool = False) -> ProbeSet:
    """Load MathVista testmini items for Mvis (``general-vqa``) and Mv2r (``math-targeted-vqa``).

    Args:
        path: a ``.json``, ``.jsonl`` or ``.parquet`` file (see the module docstring).
        descriptions: a descriptions JSON Lines file, or a dict pid -> description, for Mv2r.
        image_root: folder the ``image`` paths are relative to (default: the file's folder).
        n: items drawn per category (default 100, the paper's N); None for all.
        seed: sampling seed (default 123, the authors'); the draw is that of
            :func:`vlmdiag.probes.records.sample`.
        use_query: ask MathVista's pre-formatted ``query`` instead of the authors' layout.

    Returns:
        :class:`~vlmdiag.probes.records.ProbeSet` with ``vqa`` and ``math_vqa`` items; only the
        sampled items' images are decoded. ``skipped["Mv2r"]`` is set when no descriptions are given.
        A sampled item whose image exists but cannot be decoded is left out and listed in
        ``skipped_items`` (file, line and reason).

    Raises:
        ProbeError: a malformed record (missing pid/question/answer/metadata.category, multiple
            choice without choices, missing image), a duplicate pid, or a sampled
            math-targeted-vqa item with no description in a given descriptions file; the message
            names the file and line.
    """
    path = Path(path)
    base = Path(image_root) if image_root is not None else path.parent
    texts = descriptions if isinstance(descriptions, dict) or descriptions is None else load_descriptions(descriptions)
    pools: dict[str, list[tuple[Record, dict]]] = {"vqa": [], "math_vqa": []}
    seen: dict[str, str] = {}
    for record in read_records(path):
        if "pid" not in record.data and "_key" in record.data:
            record.data["pid"] = record.data["_key"]
        require(record, "pid", "question", "answer")
        pid = str(record.data["pid"])
        if pid in seen:
            raise ProbeError(f"{record.where}: pid {pid!r} already given at {seen[pid]}")
        seen[pid] = record.where
        meta = _metadata(record)
        _question(record, use_query)  # validate every record, not only the sampled ones
        kind = CATEGORY_KIND.get(meta["category"])
        if kind is not None:
            pools[kind].append((record, meta))
    items: dict[str, tuple[AbilityItem, ...]] = {}
    undecodable: list[str] = []
    for kind, pool in pools.items():
        chosen = sample(pool, n, seed)
        if kind == "math_vqa" and texts is not None:
            lacking = [str(r.data["pid"]) for r, _ in chosen if str(r.data["pid"]) not in texts]
            if lacking:
                raise ProbeError(
                    f"{path}: {len(lacking)} sampled math-targeted-vqa item(s) have no description "
                    f"(pids {', '.join(lacking[:5])}{' ...' if len(lacking) > 5 else ''}); add them to "
                    "the descriptions file, or omit it to skip Mv2r")
        built = []
        for record, meta in chosen:
            data = record.data
            pid = str(data["pid"])
            choices = tuple(str(c) for c in data["choices"]) if data.get("choices") else None
            try:
                image = _image(record, base)
            except _Undecodable as error:
                undecodable.append(str(error))
                continue
            built.append(AbilityItem(
                id=f"mathvista-{pid}", kind=kind, question=_question(record, use_query),
                answer=str(data["answer"]), image=image,
                description=texts.get(pid) if (texts is not None and kind == "math_vqa") else None,
                choices=choices,
                meta={"source": "mathvista", "pid": pid, "where": record.where, "category": meta["category"],
                      "context": meta.get("context"), "task": meta.get("task"),
                      "question_type": data.get("question_type"), "answer_type": data.get("answer_type"),
                      "unit": data.get("unit"), "precision": data.get("precision")}))
        if built:
            items[kind] = tuple(built)
    skipped = {}
    if texts is None:
        skipped["Mv2r"] = NO_DESCRIPTIONS
    if "vqa" not in items:
        skipped["Mvis"] = f"{path}: no general-vqa items"
    if "math_vqa" not in items:
        skipped["Mv2r"] = f"{path}: no math-targeted-vqa items"
    source = (str(path),) + ((str(descriptions),) if isinstance(descriptions, (str, Path)) else ())
    return ProbeSet(items=items, skipped=skipped, source=source, skipped_items=tuple(undecodable))
