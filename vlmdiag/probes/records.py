"""Reading local probe files (JSON, JSON Lines, parquet) record by record, with the line or row
each record came from, and the probe-set value the loaders return.

Every malformed record raises :class:`~vlmdiag.errors.ProbeError` naming the file and the line
(JSON Lines, JSON) or row (parquet).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from vlmdiag.errors import ProbeError
from vlmdiag.probes.types import AbilityItem

T = TypeVar("T")


@dataclass(frozen=True)
class ProbeSet:
    """Ability items loaded from local files.

    Attributes:
        items: items by kind (``vqa``, ``math_vqa``, ``text_math``); kinds the source has no
            items for are absent.
        skipped: metric -> reason it cannot be scored from this set (e.g. ``{"Mv2r": "no
            descriptions file given ..."}``).
        source: the files read.
        skipped_items: one ``"<file>:<line>: <reason>"`` per item left out because its image
            could not be decoded (their count is ``len(skipped_items)``).
    """

    items: dict[str, tuple[AbilityItem, ...]]
    skipped: dict[str, str] = field(default_factory=dict)
    source: tuple[str, ...] = ()
    skipped_items: tuple[str, ...] = ()

    def all_items(self) -> list[AbilityItem]:
        """Every item, kinds in the order vqa, math_vqa, text_math."""
        return [it for kind in ("vqa", "math_vqa", "text_math") for it in self.items.get(kind, ())]


@dataclass(frozen=True)
class Record:
    """One raw record and where it came from (``where`` reads ``file:line N`` or ``file:row N``)."""

    data: dict
    where: str


def read_records(path: str | Path) -> Iterator[Record]:
    """Yield the records of a ``.jsonl``, ``.json`` (a list, or a dict of id -> record, whose key
    is kept as ``_key``) or ``.parquet`` file.

    Raises:
        ProbeError: missing file, unknown suffix, a line or document that is not JSON, or a
            record that is not a JSON object; the message names the file and line/row.
    """
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"{path}: probe file does not exist")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for number, line in jsonl_lines(path):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except (ValueError, RecursionError) as error:
                raise ProbeError(f"{path}:{number}: not valid JSON ({error})") from error
            if not isinstance(data, dict):
                raise ProbeError(f"{path}:{number}: expected a JSON object, got {type(data).__name__}")
            yield Record(data, f"{path}:{number}")
    elif suffix == ".json":
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            line = raw[:error.start].count(b"\n") + 1
            raise ProbeError(f"{path}:{line}: not UTF-8 text (byte {error.start}); save the file as UTF-8") from error
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ProbeError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from error
        except RecursionError as error:
            raise ProbeError(f"{path}: not valid JSON (nested too deeply)") from error
        entries = document.items() if isinstance(document, dict) else enumerate(document) \
            if isinstance(document, list) else None
        if entries is None:
            raise ProbeError(f"{path}: expected a JSON list or object of records")
        lines = _key_lines(text)
        for key, data in entries:
            where = f"{path}:{lines.get(str(key), '?')} (entry {key!r})" if isinstance(document, dict) \
                else f"{path} (entry {key})"
            if not isinstance(data, dict):
                raise ProbeError(f"{where}: expected a JSON object, got {type(data).__name__}")
            yield Record({**data, "_key": key} if isinstance(document, dict) else data, where)
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as error:  # pragma: no cover - pyarrow comes with datasets
            raise ProbeError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from error
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as error:
            raise ProbeError(f"{path}: not a readable parquet file ({error})") from error
        for number, data in enumerate(rows):
            yield Record(data, f"{path}:row {number}")
    else:
        raise ProbeError(f"{path}: unknown probe file type {suffix!r}; expected .jsonl, .json or .parquet")


def jsonl_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(1-based line number, text)`` of each line of a UTF-8 file (lines end at ``\\n``).

    Raises:
        ProbeError: a line that is not UTF-8 (file and line named).
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ProbeError(f"{path}:{number}: not UTF-8 text (byte {error.start} of the line); "
                                 f"save the file as UTF-8") from error


def _key_lines(text: str) -> dict[str, int]:
    """Line number of each top-level key of a JSON object (best effort, for error messages)."""
    out: dict[str, int] = {}
    depth = 0
    line = 1
    i = 0
    in_string = False
    start = 0
    while i < len(text):
        ch = text[i]
        if ch == "\n":
            line += 1
        if in_string:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_string = False
                if depth == 1:
                    rest = text[i + 1:i + 40].lstrip()
                    if rest.startswith(":"):
                        out.setdefault(text[start:i], line)
        elif ch == '"':
            in_string, start = True, i + 1
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        i += 1
    return out


def require(record: Record, *fields: str) -> None:
    """Raise if any of ``fields`` is missing or empty in ``record``.

    Raises:
        ProbeError: naming the file, line and the missing fields.
    """
    missing = [f for f in fields if record.data.get(f) in (None, "")]
    if missing:
        raise ProbeError(f"{record.where}: missing field(s) {', '.join(missing)}")


def sample(items: Sequence[T], n: int | None, seed: int = 123) -> list[T]:
    """``n`` items drawn without replacement and kept in file order, as the authors draw their
    100-item splits (``numpy.random.RandomState(seed).choice``, then sorted;
    ``notes/reference-implementation.md`` §8.2). ``n=None`` or ``n >= len(items)``: all items.

    Raises:
        ValueError: ``n < 1``.
    """
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        raise ValueError(f"sample: n={n} must be at least 1")
    chosen = np.random.RandomState(seed).choice(len(items), n, replace=False)
    return [items[i] for i in sorted(int(c) for c in chosen)]


def load_descriptions(path: str | Path) -> dict[str, str]:
    """A descriptions file: JSON Lines of ``{"pid": ..., "description": ...}`` (``id`` is accepted
    for ``pid``), one per image, for the black image + description condition of Mv2r.

    Raises:
        ProbeError: malformed line, missing field, or a pid given twice (file and line named).
    """
    out: dict[str, str] = {}
    for record in read_records(path):
        key = "pid" if "pid" in record.data else "id"
        require(record, key, "description")
        pid = str(record.data[key])
        if pid in out:
            raise ProbeError(f"{record.where}: pid {pid!r} has a second description")
        if not isinstance(record.data["description"], str):
            raise ProbeError(f"{record.where}: description must be a string")
        out[pid] = record.data["description"]
    return out
