"""Writing a splice as a new checkpoint folder (:func:`write_transplant`), tensor by tensor, with a
mergekit-compatible ``mergekit_config.yml``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vlmdiag.checkpoints import Checkpoint
from vlmdiag.checkpoints.safetensors_header import read_header
from vlmdiag.errors import UsageError
from vlmdiag.regions import Regions
from vlmdiag.transplant.mergekit import mergekit_config
from vlmdiag.transplant.plan import SplicePlan, as_checkpoint, check_pair, plan_splice, resolve_regions
from vlmdiag.transplant.variants import Variant, parse_variant

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")
_OUR_FILES = ("mergekit_config.yml", "vlmdiag_transplant.json", "model.safetensors.index.json",
              "README.md")  # a source's model card would misdescribe the splice


@dataclass(frozen=True)
class TransplantResult:
    """A written splice: the folder, its plan, and the files it holds."""

    out: Path
    plan: SplicePlan
    files: tuple[str, ...]
    mergekit_exact: bool


def _check_out(out: Path, inputs: Sequence[Path]) -> Path:
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise UsageError(f"--out {out}: already exists; vlmdiag never overwrites a folder, choose a new path")
    resolved = out.resolve()
    for folder in inputs:
        folder = folder.resolve()
        if resolved == folder or folder in resolved.parents:
            raise UsageError(f"--out {out}: inside the input checkpoint {folder}; write the splice elsewhere")
    if not resolved.parent.is_dir():
        raise UsageError(f"--out {out}: parent folder {resolved.parent} does not exist")
    return resolved


def _disk_names(checkpoint: Checkpoint) -> dict[str, str]:
    """Canonical name -> on-disk name in ``checkpoint``'s safetensors files (keeps its layout)."""
    out: dict[str, str] = {}
    files = sorted(checkpoint.path.glob("*.safetensors"))
    for file in files:
        entries, _ = read_header(file)
        for name in entries:
            out[checkpoint.adapter.canonical(name)] = name
    return out


def write_transplant(a: Checkpoint | str | os.PathLike, b: Checkpoint | str | os.PathLike,
                     variant: Variant | str, out: str | os.PathLike, *,
                     regions: Regions | str = "paper", max_shard_bytes: int = 5 * 1024**3) -> TransplantResult:
    """Write the splice ``variant`` of ``a`` and ``b`` as a new checkpoint folder ``out``.

    Tensors are streamed one at a time and written in safetensors shards of at most
    ``max_shard_bytes`` (one ``model.safetensors``, or ``model-0000i-of-0000n.safetensors`` plus
    ``model.safetensors.index.json``), under the components source's on-disk names and dtypes.
    The components source's config, tokenizer, processor and other non-weight files are copied.
    Also written: ``mergekit_config.yml`` (see :func:`mergekit_config`) and
    ``vlmdiag_transplant.json`` (plan, checkpoint paths and fingerprints). Everything is written
    to a temporary folder next to ``out`` and renamed at the end; on error nothing is left.

    Raises:
        UsageError: ``out`` exists, lies inside an input folder, or its parent is missing; bad variant.
        IncompatibleCheckpointsError: the checkpoints differ in architecture, layer counts,
            tensor names or shapes.
        CheckpointError: an input checkpoint is unreadable.
    """
    a, b = as_checkpoint(a), as_checkpoint(b)
    variant = parse_variant(variant) if isinstance(variant, str) else variant
    out = _check_out(Path(out), [a.path, b.path])
    check_pair(a, b)
    plan = plan_splice(variant, resolve_regions(regions, a.num_llm_layers))
    side = {"A": a, "B": b}
    comp = side[variant.components]
    disk = _disk_names(comp)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        from safetensors.torch import save_file

        # Decide the shard of every tensor from header sizes (no data read), then stream.
        layout: list[list[str]] = [[]]
        size = total = 0
        for name in comp.names:
            nbytes = _numel(comp.shape(name)) * comp.dtype(name).itemsize
            if layout[-1] and size + nbytes > max_shard_bytes:
                layout.append([])
                size = 0
            layout[-1].append(name)
            size += nbytes
            total += nbytes
        n = len(layout)
        shard_files = ["model.safetensors"] if n == 1 else [
            f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        files: list[str] = []
        weight_map: dict[str, str] = {}
        for names, file in zip(layout, shard_files):
            shard: dict[str, torch.Tensor] = {}
            for name in names:
                value = side[plan.source_of(name, a)].get(name)
                key = disk.get(name, name)
                shard[key] = value.to(comp.dtype(name)).contiguous()
                weight_map[key] = file
            save_file(shard, str(tmp / file), metadata={"format": "pt"})
            del shard
            files.append(file)
        if len(shard_files) > 1:
            (tmp / "model.safetensors.index.json").write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
            files.append("model.safetensors.index.json")
        for item in sorted(comp.path.iterdir()):
            if item.is_file() and not item.name.endswith(_WEIGHT_SUFFIXES) and item.name not in _OUR_FILES \
                    and not item.name.endswith(".safetensors.index.json"):
                shutil.copy2(item, tmp / item.name)
                files.append(item.name)
        dtype = comp.config.get("dtype") or comp.config.get("torch_dtype")
        yaml_text, exact = mergekit_config(plan, a, b, dtype=dtype if isinstance(dtype, str) else None)
        (tmp / "mergekit_config.yml").write_text(yaml_text)
        record = {
            "tool": "vlmdiag transplant",
            **plan.as_dict("A", "B"),
            "checkpoints": {"A": {"path": str(a.path.resolve()), "fingerprint": a.fingerprint},
                            "B": {"path": str(b.path.resolve()), "fingerprint": b.fingerprint}},
            "mergekit_exact": exact,
        }
        (tmp / "vlmdiag_transplant.json").write_text(json.dumps(record, indent=2))
        files += ["mergekit_config.yml", "vlmdiag_transplant.json"]
        if out.exists():
            raise UsageError(f"--out {out}: appeared while writing; vlmdiag never overwrites a folder")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TransplantResult(out, plan, tuple(files), exact)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
