"""Parsers for the command-line values (each used as an option's ``type=``), and assembling the
recipes of a run. Every failure is a :class:`UsageError` that states the accepted form."""

from __future__ import annotations

import re

from vlmdiag.claims.evidence import Recipe
from vlmdiag.errors import UsageError
from vlmdiag.regions import REGION_NAMES, parse_regions

__all__ = ["parse_recipe", "parse_regions", "parse_rl_frozen", "recipes_from"]

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


def parse_rl_frozen(text: str) -> tuple[str, str]:
    """``REGION=CKPT`` (REGION one of Early, Mid, Late, Mid-Late; any case) → ``(Region, ckpt)``."""
    region, sep, spec = str(text).partition("=")
    canonical = {r.lower(): r for r in (*REGION_NAMES, "Mid-Late")}.get(region.strip().lower())
    if not sep or canonical is None or not spec.strip():
        raise UsageError(f"--rl-frozen {text!r}: expected REGION=CKPT with REGION one of "
                         f"Early, Mid, Late, Mid-Late, e.g. --rl-frozen Late=ckpt/rl-frozen-late")
    return canonical, spec.strip()


def recipes_from(base: str | None, rl: str | None, origin: str | None, recipes: list[Recipe],
                 rl_frozen: list[tuple[str, str]]) -> list[Recipe]:
    """The recipes of a run: ``--base/--rl[/--origin]`` (named ``main``) plus every ``--recipe``.

    Raises:
        UsageError: only one of --base/--rl, --origin or --rl-frozen without them, one region
            given to --rl-frozen twice, or two recipes with one name.
    """
    regions = [region for region, _ in rl_frozen]
    for region in dict.fromkeys(r for r in regions if regions.count(r) > 1):
        given = " and ".join(repr(spec) for r, spec in rl_frozen if r == region)
        raise UsageError(f"--rl-frozen {region} is given twice ({given}); give each region one checkpoint")
    out = []
    if base or rl:
        if not (base and rl):
            raise UsageError(f"--base and --rl go together (got only {'--base' if base else '--rl'}); "
                             f"e.g. {EXAMPLE}")
        out.append(Recipe("main", base, rl, origin, tuple(rl_frozen)))
    elif origin or rl_frozen:
        raise UsageError("--origin and --rl-frozen describe the --base/--rl recipe; pass --base and --rl too")
    out.extend(recipes)
    names = [r.name for r in out]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise UsageError(f"two recipes are named {', '.join(duplicated)}: give each --recipe a unique NAME")
    return out
