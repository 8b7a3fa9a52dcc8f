"""Parsers for the command-line values (each used as an option's ``type=``), and assembling the
recipes of a run. Every failure is a :class:`UsageError` that states the accepted form."""

from __future__ import annotations

import dataclasses
import re
from typing import NamedTuple

from vlmdiag.runner.checkpoints import RecipeCheckpoints as Recipe
from vlmdiag.errors import UsageError
from vlmdiag.regions import REGION_NAMES, parse_regions

__all__ = ["FrozenRun", "parse_recipe", "parse_regions", "parse_rl_frozen", "recipes_from"]

_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")
EXAMPLE = ("pytest --base organism:in --rl organism:rl --origin organism:base, "
           "or pytest --recipe NAME=BASE,RL[,ORIGIN] (repeatable)")


def parse_recipe(text: str) -> Recipe:
    """``NAME=BASE,RL[,ORIGIN]`` → :class:`Recipe`."""
    name, sep, rest = str(text).partition("=")
    parts = [p.strip() for p in rest.split(",")] if sep else []
    if not _NAME.match(name.strip()) or len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"--recipe {text!r}: expected NAME=BASE,RL[,ORIGIN], "
                         f"e.g. --recipe grpo-v2=ckpt/sft,ckpt/rl,Qwen/Qwen2.5-VL-7B-Instruct")
    return Recipe(name.strip(), parts[0], parts[1], parts[2] if len(parts) == 3 else None)


class FrozenRun(NamedTuple):
    """One ``--rl-frozen`` value: the region frozen during RL, the checkpoint, and the recipe it
    belongs to (None: the ``--base/--rl`` recipe, or the only ``--recipe``)."""

    region: str
    spec: str
    recipe: str | None = None


def parse_rl_frozen(text: str) -> FrozenRun:
    """``[NAME:]REGION=CKPT`` (REGION one of Early, Mid, Late, Mid-Late; any case; NAME a
    ``--recipe`` name, or ``main`` for ``--base/--rl``) → :class:`FrozenRun`."""
    left, sep, spec = str(text).partition("=")
    recipe, colon, region = left.rpartition(":")
    canonical = {r.lower(): r for r in (*REGION_NAMES, "Mid-Late")}.get(region.strip().lower())
    if not sep or canonical is None or not spec.strip() or (colon and not _NAME.match(recipe.strip())):
        raise UsageError(f"--rl-frozen {text!r}: expected [NAME:]REGION=CKPT with REGION one of "
                         f"Early, Mid, Late, Mid-Late, e.g. --rl-frozen Late=ckpt/rl-frozen-late or, for "
                         f"--recipe grpo-v2, --rl-frozen grpo-v2:Late=ckpt/rl-frozen-late")
    return FrozenRun(canonical, spec.strip(), recipe.strip() if colon else None)


def recipes_from(base: str | None, rl: str | None, origin: str | None, recipes: list[Recipe],
                 rl_frozen: list[FrozenRun | tuple[str, str]]) -> list[Recipe]:
    """The recipes of a run: ``--base/--rl[/--origin]`` (named ``main``) plus every ``--recipe``,
    each with its ``--rl-frozen`` runs: ``NAME:REGION=CKPT`` goes to recipe NAME; a plain
    ``REGION=CKPT`` to the ``--base/--rl`` recipe, or without one to the only ``--recipe``.

    Raises:
        UsageError: only one of --base/--rl, --origin without them, a plain --rl-frozen that
            could belong to several recipes, a NAME that names no recipe, one region given to
            --rl-frozen twice for one recipe, or two recipes with one name.
    """
    out = []
    if base or rl:
        if not (base and rl):
            raise UsageError(f"--base and --rl go together (got only {'--base' if base else '--rl'}); "
                             f"e.g. {EXAMPLE}")
        out.append(Recipe("main", base, rl, origin))
    elif origin:
        raise UsageError("--origin describes the --base/--rl recipe; pass --base and --rl too")
    out.extend(recipes)
    names = [r.name for r in out]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise UsageError(f"two recipes are named {', '.join(duplicated)}: give each --recipe a unique NAME")
    frozen: dict[str, list] = {}
    for run in (r if isinstance(r, FrozenRun) else FrozenRun(*r) for r in rl_frozen):
        name = run.recipe or ("main" if base else names[0] if len(names) == 1 else None)
        if name is None:
            raise UsageError(f"--rl-frozen {run.region}={run.spec}: which recipe? "
                             + (f"name it: --rl-frozen NAME:{run.region}={run.spec} with NAME one of "
                                f"{', '.join(names)}" if names else "pass --base and --rl, or a --recipe"))
        if name not in names:
            raise UsageError(f"--rl-frozen {name}:{run.region}={run.spec}: no recipe is named {name!r} "
                             f"(recipes: {', '.join(names) or 'none'}; --base/--rl is 'main')")
        earlier = dict(frozen.get(name, ()))
        if run.region in earlier:  # one would be silently dropped
            raise UsageError(f"--rl-frozen {run.region} is given twice ({earlier[run.region]!r} and "
                             f"{run.spec!r}); give each region one checkpoint")
        frozen.setdefault(name, []).append((run.region, run.spec))
    return [dataclasses.replace(r, rl_frozen=tuple(frozen.get(r.name, ()))) for r in out]
