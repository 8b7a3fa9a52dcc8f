"""Checks of a checkpoint folder beyond its safetensors headers: only regular files, a shard index
that names shards inside the folder, and a config whose layer counts match the weights.

Each check raises :class:`~vlmdiag.errors.CheckpointError` with one line naming the file and
what is wrong; none of them writes anything.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from vlmdiag.errors import CheckpointError, printable
from vlmdiag.paths import non_regular

if TYPE_CHECKING:
    from vlmdiag.checkpoints.checkpoint import Checkpoint


def check_regular_files(folder: Path) -> None:
    """Refuse a checkpoint folder that holds a FIFO, a device or a socket: reading a FIFO waits
    forever for a writer, and a device can stream without end.

    Raises:
        CheckpointError: names the first such entry and what it is.
    """
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        raise CheckpointError(f"{printable(folder)}: cannot list the checkpoint folder ({error.strerror})") from error
    for entry in entries:
        what = non_regular(entry.path)
        if what is not None and what != "a folder" and not what.startswith("unusable"):
            raise CheckpointError(f"{printable(entry.path)}: is {what}, not a regular file; a checkpoint folder "
                                  f"holds regular files (vlmdiag does not read it)")


def open_regular(path: Path) -> int:
    """A read-only file descriptor of ``path``, which must be a regular file. Opened without
    blocking, so a FIFO is refused instead of waiting for a writer.

    Raises:
        CheckpointError: cannot open it, or it is not a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise CheckpointError(f"{printable(path)}: cannot read ({error.strerror})") from error
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise CheckpointError(f"{printable(path)}: is {non_regular(path) or 'not a regular file'}, not a regular "
                              f"file; weights must be regular files")
    return fd


def shard_files(index: Path) -> dict[str, Path]:
    """The shards a ``model.safetensors.index.json`` names, by the name the index gives.

    The index must be a JSON object whose ``weight_map`` maps tensor names (strings) to shard
    file names (strings) that stay inside the checkpoint folder: relative, no ``..``, ending
    in ``.safetensors``.

    Raises:
        CheckpointError: the index is unreadable or malformed, or an entry points outside the
            folder (the message says which tensor and where).
    """
    try:
        data = json.loads(index.read_bytes())
    except OSError as error:
        raise CheckpointError(f"{printable(index)}: cannot read the shard index ({error.strerror})") from error
    except (ValueError, RecursionError) as error:
        raise CheckpointError(f"{printable(index)}: malformed shard index (not JSON: {type(error).__name__})") from error
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{printable(index)}: malformed shard index (weight_map must be a non-empty object "
                              f"mapping tensor names to shard files)")
    files: dict[str, Path] = {}
    for name, shard in weight_map.items():
        where = f"{printable(index)}: weight_map[{printable(repr(name))}]"
        if not isinstance(shard, str):
            raise CheckpointError(f"{where}: malformed shard index (the shard must be a file name string, "
                                  f"got {type(shard).__name__})")
        parts = PurePosixPath(shard.replace("\\", "/"))
        if parts.is_absolute() or ".." in parts.parts:
            raise CheckpointError(f"{where}: shard {printable(repr(shard))} points outside the checkpoint folder; "
                                  f"refused: shards must be files inside the folder")
        if not shard.endswith(".safetensors") or "\0" in shard or not parts.parts:
            raise CheckpointError(f"{where}: shard {printable(repr(shard))} is not a plain .safetensors file name")
        files[shard] = index.parent / shard
    return files


def check_layer_counts(checkpoint: Checkpoint, config_file: Path) -> None:
    """Refuse a ``config.json`` whose decoder layer count (or vision block count) disagrees
    with the layers its weights hold: every per-layer measurement would read layers that do
    not exist, or miss some.

    Raises:
        CheckpointError: names the config key, its value, and the layers the weights hold.
    """
    adapter, config = checkpoint.adapter, checkpoint.config
    checks = (("decoder", "LLM decoder layer(s)", adapter.decoder_layers, adapter.llm_layers_keys,
               checkpoint.num_llm_layers, True),
              ("vision", "vision block(s)", adapter.vision_blocks, adapter.vision_layers_keys,
               checkpoint.num_vision_layers, False))
    for _, label, prefix, keys, declared, required in checks:
        found = set()
        for name in checkpoint.names:
            if name.startswith(prefix + "."):
                index = name[len(prefix) + 1:].split(".", 1)[0]
                if index.isdigit():
                    found.add(int(index))
        if not found and not required:  # e.g. a language-only checkpoint of a VLM family
            continue
        if found != set(range(declared)):
            key = next((k for k in keys if _has(config, k)), keys[0])
            raise CheckpointError(f"{printable(config_file)}: {key} is {declared} but the weights hold "
                                  f"{len(found)} {label} ({_ranges(found)}); the config and the weights "
                                  f"disagree: fix config.json or copy the missing weights")


def _has(config: dict, key: str) -> bool:
    node = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node is not None


def _ranges(indices: set[int]) -> str:
    """``0-5, 7, 9-11`` (or ``none``)."""
    if not indices:
        return "none"
    ordered, spans = sorted(indices), []
    start = prev = ordered[0]
    for i in ordered[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        spans.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    shown = ", ".join(spans[:6]) + (" ..." if len(spans) > 6 else "")
    return f"layers {shown}"
