"""The model organism (SPEC §6): a tiny Qwen2.5-VL trained on CPU through the paper's pipeline.

``checkpoint_path("rl")`` returns the folder of an ordinary Hugging Face checkpoint (weights,
config, tokenizer, processor, chat template), building the organism into the cache on first use:
base, in, rl and rl-frozen-late at once, rl-frozen-early and rl-frozen-mid each when first asked
for. ``organism:STAGE`` checkpoint specs resolve through :func:`resolve_spec`.

The organism plugs into vlmdiag as any plugin does (:mod:`vlmdiag.hookspec`): this module's
``pytest_vlmdiag_add_checkpoint_resolvers`` registers the ``organism:`` resolver and
``pytest_vlmdiag_add_probe_suites`` the ``organism`` probe suite (its held-out synthetic items).
"""

from __future__ import annotations

import os
from pathlib import Path

from vlmdiag.errors import CheckpointError, UsageError
from vlmdiag.organism.build import ON_DEMAND_STAGES, RECIPES, STAGES, ensure_built, get_recipe
from vlmdiag.probes.suite import RecordingSuite

SPEC_PREFIX = "organism:"
RECIPE_ENV = "VLMDIAG_ORGANISM_RECIPE"

__all__ = ["STAGES", "RECIPES", "OrganismSuite", "checkpoint_path", "default_recipe_name", "organism_probe_set",
           "resolve_spec"]


def default_recipe_name() -> str:
    """``$VLMDIAG_ORGANISM_RECIPE`` when set (full|fast), else ``"full"``."""
    return os.environ.get(RECIPE_ENV) or "full"


def checkpoint_path(stage: str, *, recipe: str | None = None, cache_dir: Path | None = None,
                    progress: bool = True) -> Path:
    """The checkpoint folder of organism stage ``stage``, building it on first use (base, in,
    rl and rl-frozen-late together, about 8 minutes of the full recipe on 2 quiet CPU cores;
    rl-frozen-early and rl-frozen-mid each on its own, about 1.5 minutes more).

    Args:
        stage: one of :data:`STAGES` (base, in, rl, rl-frozen-early, rl-frozen-mid,
            rl-frozen-late).
        recipe: ``"full"`` or ``"fast"``; None means ``$VLMDIAG_ORGANISM_RECIPE`` or ``"full"``.
        cache_dir: cache root; None means ``$VLMDIAG_CACHE_DIR`` or ``~/.cache/vlmdiag``.
        progress: show a rich progress bar (stderr) while building.

    Returns:
        ``<cache>/organism/<recipe>-<hash16>/<stage>`` (``<recipe>-<hash16>.<stage>/<stage>`` for
        an on-demand stage); loads with ``from_pretrained``.

    Raises:
        CheckpointError: unknown stage or recipe (the message lists the valid ones).
    """
    if stage not in STAGES:
        raise CheckpointError(f"unknown organism stage {stage!r}; valid stages: {', '.join(STAGES)}")
    rec = get_recipe(recipe or default_recipe_name())
    on_demand = stage if stage in ON_DEMAND_STAGES else None
    return ensure_built(rec, cache_dir, progress=progress, stage=on_demand) / stage


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


# --------------------------------------------------------------------------- registration


class OrganismSuite(RecordingSuite):
    """The default probe suite (``--probes organism``, SPEC §6): the organism's held-out
    synthetic items (:func:`vlmdiag.organism.tasks.ability_items`,
    :func:`~vlmdiag.organism.tasks.swap_pairs`), which have exact descriptions and known
    answers, so every ability can be scored offline. It describes what it handed out (items
    per kind and seed, their content hash) as the built-in suites do, under pytest-xdist too.

    Raises:
        UsageError: an argument was given (``--probes organism:X``).
    """

    name = "organism"

    def __init__(self, arg: str | None = None):
        if arg:
            raise UsageError(f"--probes organism:{arg}: the organism suite takes no argument")
        super().__init__()

    def source(self) -> str:  # in words, as the report and the terminal header have always said it
        return "vlmdiag.organism.tasks (held-out synthetic items)"

    def _ability_pool(self, kind, n, seed):
        from vlmdiag.organism.tasks import ability_items

        return ability_items(kind, n, seed=seed), None

    def _swap_pool(self, task, n, seed):
        from vlmdiag.organism.tasks import swap_pairs

        return swap_pairs(task, n, seed=seed), None


def organism_probe_set(n: int = 100, *, seed: int = 0):
    """``n`` items of each kind (``vqa`` for Mvis, ``math_vqa`` for Mv2r, ``text_math`` for Mrea), as
    a :class:`~vlmdiag.probes.records.ProbeSet`.

    Raises:
        ValueError: ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"organism_probe_set: n={n} must be at least 1")
    from vlmdiag.probes.records import ProbeSet

    suite = OrganismSuite()
    items = {kind: suite.ability_items(kind, n, seed=seed).items for kind in ("vqa", "math_vqa", "text_math")}
    return ProbeSet(items=items, skipped={}, source=(f"organism:ability_items(n={n}, seed={seed})",))


def _resolve(spec: str) -> Path:
    return resolve_spec(spec)  # looked up at call time, so a patched resolve_spec takes effect


def pytest_vlmdiag_add_checkpoint_resolvers(register_resolver) -> None:
    register_resolver("organism", _resolve)


def pytest_vlmdiag_add_probe_suites(register_suite) -> None:
    register_suite("organism", OrganismSuite)
