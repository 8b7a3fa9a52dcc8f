"""Atomic file writes, shared by the reports and the results cache (both must never be seen
half-written, even after Ctrl-C)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from vlmdiag.paths import writable_target


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write a file so that readers see the old content or the new, never half of it: write a
    temporary file in the same folder, fsync, rename over the target. On any exception (Ctrl-C
    included) the temporary file is removed and ``path`` is untouched.

    A symlink is written through (the file it names gets the content, as with an ordinary
    write). The file gets the mode an ordinary write gives it: an existing file keeps its mode,
    a new one gets ``0o666`` less the umask.

    Returns:
        the path written (``path`` with symlinks resolved).

    Raises:
        UnsafeOutputError (an ``OSError``): the target exists and is not a regular file (a FIFO, a
            device, a folder), or lies inside a checkpoint folder (:mod:`vlmdiag.paths`).
        OSError: the folder does not exist or is not writable (nothing is left behind).
    """
    path = writable_target(path)
    payload = data.encode() if isinstance(data, str) else data
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # mkstemp makes it 0600 whatever the umask
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process umask, read without changing it where Linux says it (``/proc/self/status``);
    elsewhere set and restored at once."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
