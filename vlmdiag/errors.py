"""One exception tree. Every message says what was found, why it is refused, and what to do,
naming the file or option concerned.

Classes that describe bad user input also subclass the built-in exception with the same meaning,
so callers that catch ``ValueError`` or ``FileNotFoundError`` keep working.
"""

from __future__ import annotations


class VlmdiagError(Exception):
    """Root of every error vlmdiag raises on purpose."""


class UsageError(VlmdiagError, ValueError):
    """A command-line option, ini key or argument is malformed (pytest exit code 4)."""


class CheckpointError(VlmdiagError, ValueError):
    """A checkpoint cannot be resolved or read: missing folder, no weights, pickle weights refused,
    corrupt or truncated safetensors, unknown ``organism:`` stage, hub id while offline."""


class IncompatibleCheckpointsError(CheckpointError):
    """Checkpoints that are compared or spliced differ in architecture, tensor names or shapes."""


class NonFiniteWeightsError(VlmdiagError, ArithmeticError):
    """A weight or weight delta holds NaN or Inf."""


class ThresholdsError(UsageError):
    """``thresholds.yaml`` is malformed, has unknown keys, or names an unknown claim."""


class ProbeError(VlmdiagError, ValueError):
    """A probe file or probe item is malformed (the message names the file and line)."""


class NoProbeItems(VlmdiagError):
    """The run's probe suite holds no item a measurement needs (a ``paper:DIR`` folder without
    MathVista, say); the claims reading it are ``skipped`` with this message, not ``error``."""


class UnsafeOutputError(UsageError, OSError):
    """An output (report, plots, cache entry) would land inside a checkpoint folder or replace
    something that is not a regular file. A usage error up front; an ``OSError`` to the writers,
    which handle it as any failed write."""


def printable(value: object) -> str:
    """``value`` as text safe for a terminal and for a one-line message: control characters,
    newlines and other unprintable characters become Python escapes (``\\n``, ``\\x1b``), so a
    crafted file or tensor name can neither move the cursor nor start a new line."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
