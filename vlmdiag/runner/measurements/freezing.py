"""Abilities of IN, RL and every RL run with a region frozen (paper §4, Table 3)."""

from __future__ import annotations

from vlmdiag.runner.checkpoints import can_run
from vlmdiag.runner.measurements.abilities import ability_items, checkpoint_abilities
from vlmdiag.runner.plans import Plan, RegionSettings, register_plan


@register_plan("freezing", roles=("base", "rl"), settings=RegionSettings)
def plan_freezing(runner, s: RegionSettings) -> Plan:
    """IN, RL and ``RL-frozen-<Region>`` for each ``--rl-frozen`` run that can run (the others are
    left out, with a note). ``regions`` are the cuts the frozen runs were trained with (part of
    the key; the scores do not depend on them)."""
    items, notes = ability_items(runner, s.n_items, s.seed)
    roles = []
    for label, role in [("IN", "base"), ("RL", "rl")] + [(f"RL-frozen-{r}", f"rl_frozen_{r}")
                                                        for r, _ in runner.recipe.rl_frozen]:
        if role.startswith("rl_frozen_") and not can_run(runner.checkpoint(role).path):
            notes.append(f"{label} left out: its folder has no tokenizer/processor")
            continue
        roles.append((label, role))
    return checkpoint_abilities(runner, "freezing", roles, notes, items, s.max_new_tokens)
