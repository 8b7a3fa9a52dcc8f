"""Exact checkpoint identity: content digests (xxh3-128) of every tensor and every other file.

A checkpoint's identity (:attr:`~vlmdiag.checkpoints.Checkpoint.fingerprint`) is a digest of

* each tensor under its canonical name: stored dtype, shape and every data byte, whatever file
  or shard layout holds it (safetensors ``__metadata__`` and the shard index are left out: they
  do not change the model);
* every other top-level file of the folder (config, tokenizer, processor, chat template,
  generation config, ...) by name and content; hidden files are left out.

So two folders get one identity exactly when their models are the same, byte for byte, and a
splice (:meth:`vlmdiag.transplant.Splicer.fingerprint`) composed of tensors that all come from one
parent gets that parent's identity. xxh3-128 is not cryptographic: it tells apart checkpoints
that differ by accident (a 2^-128 chance of a collision between two given contents), not ones
crafted to collide.

Hashing reads every byte once (about as long as reading them; see ``bench/RESULTS.md``). With a
``store`` (a :class:`~vlmdiag.cache.ResultsCache`), a large file's digests are remembered under its
absolute path, size, modification and change times (ns), inode and device, so a rerun on unchanged
files costs a ``stat`` and reading one small entry per file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import xxhash

from vlmdiag.checkpoints.safetensors_header import DTYPES, TensorEntry

ALGORITHM = "xxh3_128"
SCHEME = 1  # bump when what a digest covers changes: remembered digests are then made again
_SMALL_FILE = 1 << 20  # files up to 1 MiB are hashed every time (cheaper than a remembered entry)
_CHUNK = 16 << 20


def _tensor_hasher(dtype: str, shape: Iterable[int]) -> xxhash.xxh3_128:
    """A hasher primed with a tensor's stored dtype (``torch.bfloat16``, ...) and shape."""
    return xxhash.xxh3_128(f"{dtype}|{','.join(map(str, shape))}|".encode())


def safetensors_digests(entries: Mapping[str, TensorEntry]) -> dict[str, str]:
    """``{name: digest}`` of tensors stored in one safetensors file (``entries`` by name, as
    :func:`~vlmdiag.checkpoints.safetensors_header.read_header` gives them), each digest covering
    the stored dtype, the shape and the data bytes.

    The file is read once, front to back, in 16 MiB chunks (no memory map: see
    :mod:`vlmdiag.checkpoints.safetensors_header`).

    Raises:
        OSError: the file cannot be read, or ends before a tensor's last byte.
    """
    digests = {}
    files = {entry.file for entry in entries.values()}
    if len(files) > 1:
        raise ValueError(f"safetensors_digests: entries of {len(files)} files, expected one")
    if not files:
        return digests
    file = files.pop()
    buffer = _buffer(max(entry.end - entry.start for entry in entries.values()))
    with open(file, "rb", buffering=0) as handle:
        for name, entry in sorted(entries.items(), key=lambda kv: kv[1].start):
            hasher = _tensor_hasher(str(DTYPES[entry.dtype]), entry.shape)
            handle.seek(entry.start)
            position = entry.start
            while position < entry.end:
                count = handle.readinto(buffer[:min(_CHUNK, entry.end - position)])
                if not count:
                    raise OSError(f"{file}: ends at byte {position}, inside tensor {name!r}")
                hasher.update(buffer[:count])
                position += count
            digests[name] = hasher.hexdigest()
    return digests


def torch_digest(tensor) -> str:
    """The digest of an in-memory tensor (stored dtype, shape, bytes), equal to the digest of the
    same tensor read from a safetensors file by :func:`safetensors_digests`."""
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    hasher = _tensor_hasher(str(tensor.dtype), tensor.shape)
    if flat.numel():
        hasher.update(flat.view(torch.uint8).numpy())
    return hasher.hexdigest()


def file_digest(path: Path) -> str:
    """The digest of a file's bytes.

    Raises:
        OSError: the file cannot be read.
    """
    hasher = xxhash.xxh3_128()
    buffer = _buffer(path.stat().st_size)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            hasher.update(buffer[:count])
    return hasher.hexdigest()


def _buffer(size: int) -> memoryview:
    """A read buffer of up to 16 MiB (a config file does not pay for zeroing 16 MiB)."""
    return memoryview(bytearray(max(1, min(_CHUNK, size))))


def remembered(store, kind: str, path: Path, compute: Callable[[], Any]) -> Any:
    """``compute()``, remembered in ``store`` (a :class:`~vlmdiag.cache.ResultsCache`, or None
    for no memory) under ``kind`` and the file's absolute path, size, modification and change
    times (ns), inode and device. Files up to 1 MiB are computed every time.

    Raises:
        OSError: the file cannot be read.
    """
    stat = path.stat()
    if store is None or stat.st_size <= _SMALL_FILE:
        return compute()
    material = {"measurement": "digests", "scheme": SCHEME, "algorithm": ALGORITHM, "kind": kind,
                "path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "ctime_ns": stat.st_ctime_ns, "inode": stat.st_ino, "device": stat.st_dev}
    hit, value = store.get("digests", material)  # no lock to read an entry (entries are renamed into place)
    return value if hit else store.obtain("digests", material, compute)[0]


def compose(files: Mapping[str, str], tensors: Mapping[str, str]) -> str:
    """The identity (32 hex characters) of a model state: ``files`` (``{file name: digest}`` of
    the folder's files other than weights) and ``tensors`` (``{canonical name: digest}``)."""
    hasher = xxhash.xxh3_128(f"vlmdiag identity {SCHEME}\n".encode())
    for section, parts in (("files", files), ("tensors", tensors)):
        hasher.update(f"{section} {len(parts)}\n".encode())
        for name in sorted(parts):
            hasher.update(f"{name}\0{parts[name]}\n".encode())
    return hasher.hexdigest()
