"""Checkpoints: resolving a spec to a folder, reading it tensor by tensor, comparing layouts."""

from vlmdiag.checkpoints.checkpoint import Checkpoint, check_compatible
from vlmdiag.checkpoints.resolve import register_resolver, resolve_checkpoint, unregister_resolver


def open_checkpoint(spec: str, *, allow_pickle: bool = False, store=None) -> Checkpoint:
    """Resolve ``spec`` (folder, ``PREFIX:REST`` of a registered resolver such as ``organism:STAGE``, or hub id) and open it; ``store`` remembers
    its content digests (see :class:`Checkpoint`).

    Raises:
        CheckpointError: see :func:`resolve_checkpoint` and :class:`Checkpoint`.
    """
    return Checkpoint(resolve_checkpoint(spec), allow_pickle=allow_pickle, spec=spec, store=store)


__all__ = ["Checkpoint", "check_compatible", "open_checkpoint", "register_resolver", "resolve_checkpoint",
           "unregister_resolver"]
