"""Where vlmdiag may write: never inside a checkpoint folder, never over anything but a regular file.

Every checkpoint this process opens is registered here (:func:`protect_checkpoint`, called by
:class:`~vlmdiag.checkpoints.Checkpoint`): its folder and the real files its entries link to (a
Hugging Face cache snapshot links into ``blobs/``). :func:`writable_target`, which every write
of a report, plot or cache entry goes through (:func:`vlmdiag.atomic.write_atomic`), refuses a
path that resolves into one of them, so a symlink planted in the report's plots folder, or a
cache folder inside a checkpoint, cannot make vlmdiag overwrite weights. The same rule is checked
up front, as a usage error, by :func:`check_output`.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from vlmdiag.errors import UnsafeOutputError, printable as shown

_lock = threading.Lock()
_folders: dict[str, str] = {}  # real folder path -> the checkpoint it belongs to, as shown in messages
_files: dict[str, str] = {}  # real path of a file a checkpoint's entry links to -> the checkpoint


def real(path: str | os.PathLike) -> Path:
    """``path`` absolute, with every symlink (the last component's too) followed."""
    return Path(os.path.realpath(os.path.abspath(path)))


def protect_checkpoint(folder: str | os.PathLike) -> None:
    """Register ``folder`` (a checkpoint) as a place vlmdiag never writes into: the folder's
    real path, and the real targets of the symlinks directly inside it (files and folders; a
    hub snapshot's files link into ``blobs/``). Only the top level is listed: a mistaken spec
    such as ``/`` must not walk a whole file system."""
    shown = str(folder)
    found = {str(real(folder)): "folder"}
    try:
        entries = list(os.scandir(folder))
    except OSError:  # not listable: the checkpoint's own checks report it
        entries = []
    for entry in entries:
        if entry.is_symlink():
            target = real(entry.path)
            found[str(target)] = "folder" if target.is_dir() else "file"
    with _lock:
        for path, kind in found.items():
            (_folders if kind == "folder" else _files)[path] = shown


def checkpoint_holding(path: str | os.PathLike, folders: Iterable[str | os.PathLike] = ()) -> str | None:
    """The checkpoint that ``path`` (resolved) lands in: one of ``folders``, or one registered by
    :func:`protect_checkpoint`; None when it lands in none."""
    target = real(path)
    candidates = {str(real(f)): str(f) for f in folders}
    with _lock:
        candidates.update(_folders)
        files = dict(_files)
    if str(target) in files:
        return files[str(target)]
    for parent in (target, *target.parents):
        if str(parent) in candidates:
            return candidates[str(parent)]
    return None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def non_regular(path: str | os.PathLike) -> str | None:
    """What ``path`` (symlinks followed) is when it exists and is not a regular file, e.g.
    ``"a FIFO"``; None for a regular file or nothing (a dangling symlink counts as nothing)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there (a missing folder is reported elsewhere)
        return None
    except OSError as error:  # e.g. a symlink loop, a name too long: not something to write over
        return f"unusable ({error.strerror})"
    return None if stat.S_ISREG(mode) else _kind(mode)


def writable_target(path: str | os.PathLike) -> Path:
    """The real path to write for ``path``: symlinks followed, so a link keeps pointing at the
    file it names, as when an ordinary program writes through it.

    Raises:
        UnsafeOutputError (an ``OSError`` and a usage error): the target exists and is not a
            regular file, or it lies inside a checkpoint folder this process opened.
    """
    target = real(path)
    what = non_regular(target)
    if what is not None:
        raise UnsafeOutputError(f"{shown(path)}: is {what}; vlmdiag only writes regular files (or new ones)")
    holder = checkpoint_holding(target)
    if holder is not None:
        raise UnsafeOutputError(f"{shown(path)}: lies inside the checkpoint {shown(holder)}; "
                                f"vlmdiag never writes into a checkpoint folder")
    return target


def check_output(path: str | os.PathLike, option: str, checkpoints: Iterable[str | os.PathLike],
                 *, folder: bool = False, file_ok: bool = False, fix: str = "") -> None:
    """Up-front check of one output location of a run (the report, its plots folder, the cache).

    Args:
        path: where the output goes (a file; with ``folder=True`` a folder vlmdiag creates files in).
        file_ok: with ``folder=True``, a regular file there is no error (its writer copes with it).
        option: what set it, for the message (``--report-json``, ``$VLMDIAG_CACHE_DIR``, ...).
        checkpoints: the run's checkpoint folders (checked besides the registered ones).
        fix: what to do, appended to the message.

    Raises:
        UnsafeOutputError: ``path`` resolves into a checkpoint folder, or it exists and is not a
            regular file (not a folder, with ``folder=True``; a regular file is then refused too,
            unless ``file_ok``).
    """
    target = real(path)
    holder = checkpoint_holding(target, checkpoints)
    if holder is not None:
        raise UnsafeOutputError(f"{shown(path)}: {option} lies inside the checkpoint {shown(holder)}; vlmdiag "
                                f"never writes into a checkpoint folder{fix}")
    what = "a regular file" if folder and target.is_file() and not file_ok else non_regular(target)
    if what is not None and not (folder and what == "a folder"):
        raise UnsafeOutputError(f"{shown(path)}: {option} is {what}; vlmdiag only writes "
                                f"{'into folders' if folder else 'regular files'} (or new ones){fix}")


def check_holds_no_checkpoint(folder: str | os.PathLike, option: str, checkpoints: Iterable[str | os.PathLike],
                              fix: str = "") -> None:
    """Up-front check that ``folder`` (where vlmdiag creates subfolders, e.g. the results cache)
    holds none of ``checkpoints``.

    Raises:
        UnsafeOutputError: a checkpoint lies inside ``folder``.
    """
    root = real(folder)
    for checkpoint in checkpoints:
        if root in real(checkpoint).parents:
            raise UnsafeOutputError(f"{shown(folder)}: {option} holds the checkpoint {shown(checkpoint)}; "
                                    f"vlmdiag never writes into a checkpoint folder{fix}")
