"""Atomic file writes, shared by the reports and the results cache (both must never be seen
half-written, even after Ctrl-C)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write a file so that readers see the old content or the new, never half of it: write a
    temporary file in the same folder, fsync, rename over the target. On any exception (Ctrl-C
    included) the temporary file is removed and ``path`` is untouched.

    Raises:
        OSError: the folder does not exist or is not writable (nothing is left behind).
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
