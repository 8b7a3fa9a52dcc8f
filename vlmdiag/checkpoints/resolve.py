"""Turning a checkpoint spec into a local folder: a path, ``NAME:REST`` for a registered resolver
(the model organism registers ``organism:``), or a hub id."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from vlmdiag.errors import CheckpointError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

Resolver = Callable[[str], "str | Path"]
"""Turns a whole spec (``organism:rl``) into its local folder, or raises
:class:`~vlmdiag.errors.CheckpointError`."""

_RESOLVERS: dict[str, Resolver] = {}


def register_resolver(prefix: str, resolve: Resolver) -> None:
    """Make specs ``PREFIX:REST`` resolve through ``resolve(spec)`` (the model organism's
    ``organism:``; plugins through the ``pytest_vlmdiag_add_checkpoint_resolvers`` hook).

    Raises:
        ValueError: ``prefix`` is empty, holds ``:`` or ``/``, or is registered to another resolver.
    """
    if not prefix or ":" in prefix or "/" in prefix:
        raise ValueError(f"checkpoint resolver prefix {prefix!r}: must be non-empty without ':' or '/'")
    if _RESOLVERS.get(prefix, resolve) is not resolve:
        raise ValueError(f"checkpoint resolver {prefix + ':'!r} is already registered")
    _RESOLVERS[prefix] = resolve


def unregister_resolver(prefix: str) -> None:
    """Forget the resolver of ``prefix`` (no error when there is none)."""
    _RESOLVERS.pop(prefix, None)


def resolve_checkpoint(spec: str) -> Path:
    """The local folder a checkpoint spec names.

    Accepts ``PREFIX:REST`` for a registered resolver (:func:`register_resolver`; the model
    organism's ``organism:STAGE``, built into the cache on first use), a local folder, or a Hugging
    Face hub id ``org/name`` (downloaded when online).

    Raises:
        CheckpointError: the folder does not exist, the resolver refuses the spec (an unknown
            organism stage), or the hub id cannot be downloaded (for example while offline).
    """
    prefix, colon, _ = spec.partition(":")
    if colon and prefix in _RESOLVERS:
        return Path(_RESOLVERS[prefix](spec))
    try:
        path = Path(spec).expanduser()
    except RuntimeError:  # "~user/..." for a user that does not exist: take the text literally
        path = Path(spec)
    try:
        exists = path.exists()
    except OSError as error:  # e.g. a name longer than the file system allows
        raise CheckpointError(f"{spec!r}: not a usable checkpoint path ({error.strerror})") from error
    if exists:
        if not path.is_dir():
            raise CheckpointError(f"{_shown(path)}: a checkpoint must be a folder (config.json + safetensors), "
                                  f"this is a file")
        return path
    if _HUB_ID.match(spec) and not spec.startswith("."):
        return _download(spec)
    raise CheckpointError(f"{_shown(path)}: checkpoint folder does not exist")


def _shown(path: Path) -> str:
    """The path as typed, or its repr when it holds a newline or another unprintable character
    (so the error stays one readable line)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


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
