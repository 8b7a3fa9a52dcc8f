"""Reading safetensors files tensor by tensor without memory-mapping them.

``safe_open`` memory-maps the file, and every page it touches stays resident and counts in the
process RSS; a weight pass over three 16 GB checkpoints would look like 48 GB. Reading each
tensor's byte range with ``os.pread`` keeps the footprint at the tensors in flight.
The format is the documented one: an 8-byte little-endian header length, a JSON header, then
the data; offsets in the header are relative to the end of the header.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from vlmdiag.checkpoints.validate import open_regular
from vlmdiag.errors import CheckpointError, printable

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
for _name, _attr in (("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2")):
    if getattr(torch, _attr, None) is not None:
        DTYPES[_name] = getattr(torch, _attr)

_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors file: its file, dtype name, shape and absolute byte range."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def read_header(path: Path) -> tuple[dict[str, TensorEntry], bytes]:
    """Parse and validate the header of one safetensors file, as strictly as the safetensors
    library does (``Metadata::validate``): the header is a JSON object, ``__metadata__`` maps strings to strings, every tensor has a supported dtype, a shape of
    non-negative integers and ``data_offsets`` whose length is dtype size × element count, and
    the byte ranges, sorted, tile the data exactly: from 0, contiguous, non-overlapping, up to
    the end of the file. A file that breaks any rule would be refused by ``safetensors`` (and by
    transformers); reading it anyway gives tensors from the wrong bytes.

    Returns:
        (entries by on-disk tensor name, the raw header bytes for fingerprinting).

    Raises:
        CheckpointError: the file is not a regular file, not safetensors, its header is corrupt,
            or it is truncated (a tensor's byte range runs past the end of the file).
    """
    shown = printable(path)
    fd = open_regular(path)
    try:
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            prefix = f.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{shown}: not a safetensors file ({size} bytes, no header)")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(_MAX_HEADER, size - 8):
                raise CheckpointError(
                    f"{shown}: corrupt safetensors header (declares {length} header bytes in a "
                    f"{size}-byte file)")
            raw = f.read(length)
    except OSError as error:
        raise CheckpointError(f"{shown}: cannot read ({error.strerror})") from error
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        metadata = header.get("__metadata__", {})
        if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
            raise ValueError("__metadata__ is not an object of strings")
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
        raise CheckpointError(f"{shown}: corrupt safetensors header ({type(error).__name__}: {error})") from error
    data_start = 8 + length
    ranges = []
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
            if not isinstance(shape, list) or not all(map(_is_count, shape)):
                raise ValueError(f"shape {shape!r} is not a list of non-negative integers")
            if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets)):
                raise ValueError(f"data_offsets {offsets!r} are not two non-negative integers")
            begin, end = offsets
            numel = 1
            for dim in shape:
                numel *= dim
                if numel >= 2**64:
                    raise ValueError(f"shape {shape!r} overflows")
            if not isinstance(dtype, str) or dtype not in DTYPES:
                raise ValueError(f"unsupported dtype {dtype!r}")
            if end < begin or end - begin != numel * DTYPES[dtype].itemsize:
                raise ValueError(f"byte range {begin}..{end} does not fit shape {list(shape)} {dtype}")
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{shown}: corrupt safetensors header entry {printable(repr(name))} ({printable(error)})") from error
        ranges.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(ranges):
        if begin != position:
            what = "overlaps the tensor before it" if begin < position else f"leaves bytes {position}..{begin} unused"
            raise CheckpointError(
                f"{shown}: corrupt safetensors header entry {printable(repr(name))} (data_offsets {begin}..{end} "
                f"{what}; tensors must tile the data contiguously)")
        position = end
    if data_start + position > size:
        last = max(ranges)[2]
        raise CheckpointError(
            f"{shown}: truncated safetensors file: tensor {printable(repr(last))} ends at byte "
            f"{data_start + position} but the file has {size} bytes")
    if data_start + position < size:
        raise CheckpointError(
            f"{shown}: corrupt safetensors file: {size - data_start - position} byte(s) after the last "
            f"tensor's data (the header accounts for {data_start + position} of {size} bytes)")
    entries = {name: TensorEntry(path, header[name]["dtype"], tuple(int(d) for d in header[name]["shape"]),
                                 data_start + begin, data_start + end) for begin, end, name in ranges}
    return entries, raw


def _is_count(value) -> bool:
    """A JSON non-negative integer (``true`` is not one, though Python says bool is an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def pread_into(fd: int, view: memoryview, position: int, file: Path) -> None:
    """Fill ``view`` with the bytes of ``fd`` from ``position`` on (``os.preadv``, which may return
    short counts; it releases the GIL, so other threads compute meanwhile).

    Raises:
        CheckpointError: the file ends before ``view`` is full (names ``file``).
    """
    offset = 0
    while offset < len(view):
        chunk = os.preadv(fd, [view[offset:]], position + offset)
        if chunk == 0:
            raise CheckpointError(f"{file}: truncated while reading tensor data")
        offset += chunk


def read_tensor(entry: TensorEntry) -> torch.Tensor:
    """Read one tensor's bytes with ``os.pread`` into a fresh CPU tensor (no mmap)."""
    buffer = bytearray(entry.end - entry.start)
    fd = os.open(entry.file, os.O_RDONLY)
    try:
        pread_into(fd, memoryview(buffer), entry.start, entry.file)
    finally:
        os.close(fd)
    if not buffer:
        return torch.empty(entry.shape, dtype=DTYPES[entry.dtype])
    return torch.frombuffer(buffer, dtype=DTYPES[entry.dtype]).reshape(entry.shape)
