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
