"""The model organism (SPEC §6): a tiny Qwen2.5-VL trained on CPU through the paper's pipeline.

``checkpoint_path("rl")`` returns the folder of an ordinary Hugging Face checkpoint (weights,
config, tokenizer, processor, chat template), building all six stages into the cache on first
use. ``organism:STAGE`` checkpoint specs resolve through :func:`resolve_spec`.
"""

from __future__ import annotations

import os
from pathlib import Path

from vlmdiag.errors import CheckpointError
from vlmdiag.organism.build import RECIPES, STAGES, ensure_built, get_recipe

SPEC_PREFIX = "organism:"
RECIPE_ENV = "VLMDIAG_ORGANISM_RECIPE"

__all__ = ["STAGES", "RECIPES", "checkpoint_path", "resolve_spec", "default_recipe_name"]


def default_recipe_name() -> str:
    """``$VLMDIAG_ORGANISM_RECIPE`` when set (full|fast), else ``"full"``."""
    return os.environ.get(RECIPE_ENV) or "full"


def checkpoint_path(stage: str, *, recipe: str | None = None, cache_dir: Path | None = None,
                    progress: bool = True) -> Path:
    """The checkpoint folder of organism stage ``stage``, building the organism on first use.

    Args:
        stage: one of :data:`STAGES` (base, in, rl, rl-frozen-early, rl-frozen-mid,
            rl-frozen-late).
        recipe: ``"full"`` or ``"fast"``; None means ``$VLMDIAG_ORGANISM_RECIPE`` or ``"full"``.
        cache_dir: cache root; None means ``$VLMDIAG_CACHE_DIR`` or ``~/.cache/vlmdiag``.
        progress: show a rich progress bar (stderr) while building.

    Returns:
        ``<cache>/organism/<recipe>-<hash16>/<stage>``; loads with ``from_pretrained``.

    Raises:
        CheckpointError: unknown stage or recipe (the message lists the valid ones).
    """
    if stage not in STAGES:
        raise CheckpointError(f"unknown organism stage {stage!r}; valid stages: {', '.join(STAGES)}")
    rec = get_recipe(recipe or default_recipe_name())
    return ensure_built(rec, cache_dir, progress=progress) / stage


def resolve_spec(spec: str, *, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """Resolve a checkpoint spec ``organism:STAGE`` (optionally ``organism:STAGE@fast``).

    Raises:
        CheckpointError: the spec does not start with ``organism:``, or names an unknown stage
            or recipe.
    """
    if not spec.startswith(SPEC_PREFIX):
        raise CheckpointError(f"{spec!r} is not an organism spec (expected organism:STAGE with "
                              f"STAGE in {', '.join(STAGES)})")
    rest = spec[len(SPEC_PREFIX):]
    stage, _, recipe = rest.partition("@")
    return checkpoint_path(stage, recipe=recipe or None, cache_dir=cache_dir, progress=progress)
