"""MATH-500 from a local copy, as Mrea probes (text-only math; paper App. C, Eq. 6).

Layouts read: the published ``test.jsonl`` (``HuggingFaceH4/MATH-500``: ``problem``, ``answer``,
``solution``, ``subject``, ``level``, ``unique_id``), a JSON list of the same records, or its
parquet export. Only ``problem`` and ``answer`` are required.
"""

from __future__ import annotations

from pathlib import Path

from vlmdiag.errors import ProbeError
from vlmdiag.probes.records import ProbeSet, read_records, require, sample
from vlmdiag.probes.types import AbilityItem


def load_math500(path: str | Path, *, n: int | None = 100, seed: int = 123,
                 min_level: int | None = None) -> ProbeSet:
    """Load MATH-500 problems as ``text_math`` items (Mrea).

    Args:
        path: ``.jsonl``, ``.json`` or ``.parquet`` file.
        n: items drawn (default 100, the paper's N); None for all.
        seed: sampling seed (default 123, the authors'), see :func:`vlmdiag.probes.records.sample`.
        min_level: keep only problems of at least this ``level`` (the authors' unused ``v2``
            split takes levels 4–5); None keeps all.

    Returns:
        :class:`~vlmdiag.probes.records.ProbeSet` with ``text_math`` items; ids are
        ``math500-<unique_id>`` (or ``math500-<line>`` when there is no unique_id).

    Raises:
        ProbeError: a malformed line, a record without problem/answer, a non-integer level when
            ``min_level`` is given, or a duplicate id; the message names the file and line.
    """
    path = Path(path)
    pool = []
    seen: dict[str, str] = {}
    for number, record in enumerate(read_records(path), start=1):
        require(record, "problem", "answer")
        key = str(record.data.get("unique_id") or number)
        if key in seen:
            raise ProbeError(f"{record.where}: id {key!r} already given at {seen[key]}")
        seen[key] = record.where
        if min_level is not None:
            try:
                level = int(str(record.data.get("level")).replace("Level", "").strip())
            except ValueError as error:
                raise ProbeError(f"{record.where}: level {record.data.get('level')!r} is not an integer") from error
            if level < min_level:
                continue
        pool.append((key, record))
    items = tuple(
        AbilityItem(id=f"math500-{key}", kind="text_math", question=str(record.data["problem"]),
                    answer=str(record.data["answer"]),
                    meta={"source": "math500", "where": record.where, "subject": record.data.get("subject"),
                          "level": record.data.get("level"), "unique_id": record.data.get("unique_id")})
        for key, record in sample(pool, n, seed))
    skipped = {} if items else {"Mrea": f"{path}: no MATH-500 problems"}
    return ProbeSet(items={"text_math": items} if items else {}, skipped=skipped, source=(str(path),))
