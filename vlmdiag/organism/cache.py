"""The model organism's build cache: where entries live (:func:`cache_root`, :func:`entry_dir`),
their manifest of file sizes and SHA-256 (written last), its validation and the builders' lock."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vlmdiag.organism.recipe import FIRST_STAGES, Recipe

MANIFEST = "organism-manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$VLMDIAG_CACHE_DIR``, else ``~/.cache/vlmdiag``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("VLMDIAG_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "vlmdiag"


def entry_dir(recipe: Recipe, cache_dir: str | os.PathLike | None = None,
              stage: str | None = None) -> Path:
    """The cache folder of ``recipe``'s first stages, ``<root>/organism/<name>-<hash[:16]>``,
    or with ``stage`` that on-demand stage's, ``<the same>.<stage>``."""
    name = f"{recipe.name}-{recipe.hash()[:16]}"
    return cache_root(cache_dir) / "organism" / (f"{name}.{stage}" if stage else name)


def _write_manifest(folder: Path, recipe: Recipe) -> None:
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[str(p.relative_to(folder))] = {"size": p.stat().st_size, "sha256": _sha256(p)}
    manifest = {"recipe_hash": recipe.hash(), "recipe": recipe.to_dict(), "files": files,
                "complete": True}
    tmp = folder / (MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, folder / MANIFEST)


def validate_entry(folder: Path, recipe: Recipe, *, stages: tuple[str, ...] = FIRST_STAGES,
                   check_hashes: bool = True) -> str | None:
    """None when ``folder`` is a complete, intact build of ``stages`` of ``recipe``; else why it
    is not.

    Checks: the manifest exists and parses, names this recipe's hash, every stage folder has
    ``config.json`` and ``model.safetensors``, and every listed file exists with the recorded size
    (and SHA-256 when ``check_hashes``).
    """
    mpath = folder / MANIFEST
    if not mpath.is_file():
        return f"{folder}: no {MANIFEST} (half-written or foreign folder)"
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
    except Exception as error:
        return f"{mpath}: unreadable manifest ({error})"
    if manifest.get("recipe_hash") != recipe.hash():
        return f"{mpath}: built from another recipe"
    for stage in stages:
        for name in ("config.json", "model.safetensors"):
            if f"{stage}/{name}" not in files:
                return f"{folder}: stage {stage!r} lacks {name}"
    for rel, info in files.items():
        p = folder / rel
        if not p.is_file():
            return f"{p}: missing"
        if p.stat().st_size != info["size"]:
            return f"{p}: size {p.stat().st_size} != {info['size']} (truncated or modified)"
        if check_hashes and _sha256(p) != info["sha256"]:
            return f"{p}: SHA-256 mismatch (corrupted)"
    return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
