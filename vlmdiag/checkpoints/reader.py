"""Reading tensor elements into buffers the caller owns.

:meth:`Checkpoint.get` allocates a fresh tensor per call. A weight pass over three checkpoints
reads hundreds of tensors (and, in row chunks, thousands of slices); allocating each one costs a
page fault per 4 KiB page on first touch, which measured as much as the reading itself.
:class:`TensorReader` reads into buffers that are reused, with each weight file opened once.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vlmdiag.checkpoints.safetensors_header import pread_into
from vlmdiag.errors import CheckpointError

if TYPE_CHECKING:
    from vlmdiag.checkpoints.checkpoint import Checkpoint


class TensorReader:
    """Reads elements of one checkpoint's tensors into caller-owned CPU buffers.

    Safetensors data is read with ``os.pread`` (no mmap, GIL released while the kernel copies),
    so one reader may be shared by threads. Pickle-only tensors are loaded whole on the first
    read of a name and kept, one per thread, until that thread reads another name.
    Use as a context manager (closes the file descriptors).
    """

    def __init__(self, checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self._fds: dict[Path, int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def dtype(self, name: str) -> torch.dtype:
        """Stored dtype of a tensor."""
        return self.checkpoint.dtype(name)

    def numel(self, name: str) -> int:
        """Number of elements of a tensor (from the header)."""
        return math.prod(self.checkpoint.shape(name))

    def read_into(self, name: str, out: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Fill ``out`` with elements ``start … start + out.numel() − 1`` of the flattened tensor.

        Args:
            name: canonical tensor name.
            out: contiguous CPU tensor of the stored dtype (pinned memory is fine); any shape.
            start: index of the first element, in the tensor flattened in row-major order.

        Returns:
            ``out``.

        Raises:
            KeyError: no such tensor.
            ValueError: ``out`` is not contiguous, on another device or of another dtype, or the
                range runs past the tensor's end.
            CheckpointError: the file ends early (truncated since it was opened).
        """
        dtype = self.dtype(name)
        if out.dtype != dtype or out.device.type != "cpu" or not out.is_contiguous():
            raise ValueError(f"read_into({name!r}): need a contiguous CPU {dtype} buffer, got "
                             f"{'contiguous' if out.is_contiguous() else 'strided'} {out.device} {out.dtype}")
        count = out.numel()
        if start < 0 or start + count > self.numel(name):
            raise ValueError(f"read_into({name!r}): elements {start}..{start + count} outside 0..{self.numel(name)}")
        if count == 0:
            return out
        entry = self.checkpoint.entry(name)
        if entry is None:
            source = getattr(self._local, "tensor", None)
            if getattr(self._local, "name", None) != name:
                source = self.checkpoint.get(name).reshape(-1)
                self._local.name, self._local.tensor = name, source
            out.view(-1).copy_(source[start:start + count])
            return out
        size = dtype.itemsize
        view = memoryview(out.view(-1).view(torch.uint8).numpy())
        pread_into(self._fd(entry.file), view, entry.start + start * size, entry.file)
        return out

    def slices(self, name: str, buffer: torch.Tensor, chunk: int) -> Iterator[int]:
        """Read the flattened tensor ``chunk`` elements at a time into ``buffer[:k]``, yielding
        ``k`` after each slice (``chunk`` except for the last). The loop a pass over many small
        slices needs, with the per-read checks done once.

        Args:
            buffer: contiguous 1-D CPU tensor of the stored dtype, at least ``chunk`` elements.

        Raises:
            ValueError: ``buffer`` is unsuitable or shorter than ``chunk``.
            CheckpointError: the file ends early.
        """
        numel = self.numel(name)
        if buffer.numel() < min(chunk, numel) or buffer.dim() != 1:
            raise ValueError(f"slices({name!r}): need a 1-D buffer of at least {chunk} elements")
        self.read_into(name, buffer[:0])  # checks dtype, device and layout once
        entry = self.checkpoint.entry(name)
        if entry is None:
            for start in range(0, numel, chunk):
                k = min(chunk, numel - start)
                self.read_into(name, buffer[:k], start)
                yield k
            return
        size = buffer.element_size()
        fd, view = self._fd(entry.file), memoryview(buffer.view(torch.uint8).numpy())
        for start in range(0, numel, chunk):
            k = min(chunk, numel - start)
            pread_into(fd, view[:k * size], entry.start + start * size, entry.file)
            yield k

    def _fd(self, file: Path) -> int:
        fd = self._fds.get(file)
        if fd is None:
            with self._lock:
                fd = self._fds.get(file)
                if fd is None:
                    try:
                        fd = self._fds[file] = os.open(file, os.O_RDONLY)
                    except OSError as error:
                        raise CheckpointError(f"{file}: cannot open ({error.strerror})") from error
        return fd

    def close(self) -> None:
        """Close every file this reader opened."""
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def __enter__(self) -> TensorReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

