"""A recipe's checkpoints by role, and the checkpoints a run has opened."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlmdiag.checkpoints import Checkpoint, open_checkpoint

ROLES = ("base", "rl", "origin")

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def can_run(folder) -> bool:
    """Whether a checkpoint folder holds what inference needs besides weights: a tokenizer
    vocabulary and an image-processor configuration (weight-only folders, such as the planted
    triples of :mod:`vlmdiag.planted`, do not)."""
    folder = Path(folder)
    return (any((folder / f).is_file() for f in _TOKENIZER_FILES)
            and any((folder / f).is_file() for f in _PROCESSOR_FILES))


@dataclass(frozen=True)
class RecipeCheckpoints:
    """The checkpoint specs of one RL recipe (``--base/--rl``, ``--recipe``). ``base`` is the
    paper's IN, ``origin`` its Base; ``rl_frozen`` is ``((region, spec), ...)``. (The model
    organism's training recipe is another thing: :class:`vlmdiag.organism.build.Recipe`.)"""

    name: str
    base: str
    rl: str
    origin: str | None = None
    rl_frozen: tuple[tuple[str, str], ...] = ()

    def specs(self) -> dict[str, str]:
        """``{role: spec}`` of the checkpoints given (roles ``base``, ``rl``, ``origin``,
        ``rl_frozen_<Region>``)."""
        out = {"base": self.base, "rl": self.rl}
        if self.origin:
            out["origin"] = self.origin
        out.update({f"rl_frozen_{region}": spec for region, spec in self.rl_frozen})
        return out


class CheckpointCache:
    """Opened checkpoints by spec, shared by every recipe of a run (a spec is opened once).
    ``store`` (a :class:`~vlmdiag.cache.ResultsCache`, or None) remembers their content digests."""

    def __init__(self, *, allow_pickle: bool = False, trust_remote_code: bool = False, store=None):
        self.allow_pickle = allow_pickle
        self.trust_remote_code = trust_remote_code  # for loading models (--trust-remote-code)
        self.store = store
        self._open: dict[str, Checkpoint] = {}

    def get(self, spec: str) -> Checkpoint:
        if spec not in self._open:
            self._open[spec] = open_checkpoint(spec, allow_pickle=self.allow_pickle, store=self.store)
        return self._open[spec]
