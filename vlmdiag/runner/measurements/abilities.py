"""Mvis/Mv2r/Mrea of the recipe's stages (paper §2.2, Table 1): Base (``origin``, when it can run),
IN and RL, on the suite's ability items; and :func:`checkpoint_abilities`, the table of unmodified
checkpoints that the freezing plan shares."""

from __future__ import annotations

from functools import partial

from vlmdiag.runner.checkpoints import can_run
from vlmdiag.runner.plans import Plan, ProbeSettings, register_plan

#: Ability kinds, in the order their items are asked (Mvis, Mv2r, Mrea).
KINDS = ("vqa", "math_vqa", "text_math")


def ability_items(runner, n: int, seed: int, *, required: tuple[str, ...] = ()) -> tuple[list, list[str]]:
    """``(items, notes)``: ``n`` items of each kind from the run's suite, kinds in :data:`KINDS`
    order, and the suite's notes on any kind that came short.

    Raises:
        NoProbeItems: the suite holds no item of a ``required`` kind (its note says why).
    """
    items, notes = [], []
    for kind in KINDS:
        drawn = runner.ability_items(kind, n, seed)
        items += list(drawn.items)
        if drawn.note:
            notes.append(f"{kind}: {drawn.note}")
        if kind in required and not drawn.items:
            from vlmdiag.errors import NoProbeItems

            raise NoProbeItems(f"the {getattr(runner.probes, 'name', '?')} probe suite holds no {kind} item: "
                               f"{drawn.note or 'none handed out'}")
    return items, notes


def checkpoint_abilities(runner, step: str, roles: list[tuple[str, str]], notes: list[str], items,
                         max_new_tokens: int) -> Plan:
    """Abilities of unmodified checkpoints: ``roles`` is ``[(label, role)]``, ``notes`` what
    was left out; the :class:`~vlmdiag.measure.tables.AbilityTable` is keyed by label."""

    def compute():
        from vlmdiag.measure.tables import AbilityTable

        states = ((label, partial(runner.loaded, role), runner.checkpoint(role).fingerprint) for label, role in roles)
        scores = runner.ability_sweep(f"{step} (" + ", ".join(label for label, _ in roles) + ")",
                                      items, max_new_tokens, len(roles), states)
        return AbilityTable(scores, tuple(notes))

    return Plan(tuple(role for _, role in roles), compute, runner.model_device, probes=items)


@register_plan("abilities", roles=("base", "rl"), settings=ProbeSettings)
def plan_abilities(runner, s: ProbeSettings) -> Plan:
    """The stage table: Base (when ``origin`` can run), IN, RL."""
    items, notes = ability_items(runner, s.n_items, s.seed, required=("vqa",))  # Mvis is the claim's statistic
    roles = []
    if runner.recipe.origin is not None:
        if can_run(runner.checkpoint("origin").path):
            roles.append(("Base", "origin"))
        else:
            notes.append("Base (--origin) left out: its folder has no tokenizer/processor")
    else:
        notes.append("Base stage left out: no --origin")
    roles += [("IN", "base"), ("RL", "rl")]
    return checkpoint_abilities(runner, "abilities", roles, notes, items, s.max_new_tokens)
