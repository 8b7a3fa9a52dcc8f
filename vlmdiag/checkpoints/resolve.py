"""Turning a checkpoint spec into a local folder: a path, ``organism:STAGE``, or a hub id."""

from __future__ import annotations

import re
from pathlib import Path

from vlmdiag.errors import CheckpointError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_checkpoint(spec: str) -> Path:
    """The local folder a checkpoint spec names.

    Accepts ``organism:STAGE`` (the built-in model organism, built into the cache on first use),
    a local folder, or a Hugging Face hub id ``org/name`` (downloaded when online).

    Raises:
        CheckpointError: the folder does not exist, the organism stage is unknown, or the hub id
            cannot be downloaded (for example while offline).
    """
    if spec.startswith("organism:"):
        from vlmdiag import organism  # builds with trl; import only when asked for

        return organism.checkpoint_path(spec.split(":", 1)[1])
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path}: a checkpoint must be a folder (config.json + safetensors), "
                                  f"this is a file")
        return path
    if _HUB_ID.match(spec) and not spec.startswith("."):
        return _download(spec)
    raise CheckpointError(f"{path}: checkpoint folder does not exist")


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(
            repo_id, allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"]))
    except Exception as error:
        raise CheckpointError(
            f"{repo_id}: not a local folder, and downloading it from the Hugging Face hub failed "
            f"({type(error).__name__}); if you are offline, download it elsewhere and pass the folder"
        ) from error
